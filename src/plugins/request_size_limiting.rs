//! `request-size-limiting` (PRIORITY 951, access): refuses with 413 a request whose body is
//! larger than `allowed_payload_size` (in bytes, kilobytes or megabytes), and optionally one
//! without a valid `Content-Length` (`kong/plugins/request-size-limiting/handler.lua`).
//!
//! Kong reads a body without a Content-Length whole before it measures it; switchyard counts
//! a chunked body as it streams to the upstream and cuts the request with the same answer
//! once it passes the limit, so that nothing is held in memory.

use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;

use super::Validate;
use super::{BodyFlow, BuildCx, Chunk, Ctx, Flow, Kind, Phases, Plugin, PluginSpec, Request};
use crate::exchange::respond;

/// The plugin's `config` (Kong's `kong/plugins/request-size-limiting/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// In `size_unit`s. Kong sets no bound on it.
    #[serde(default = "default_allowed_payload_size")]
    pub allowed_payload_size: i64,
    #[serde(default)]
    pub size_unit: SizeUnit,
    #[serde(default)]
    pub require_content_length: bool,
}

/// Kong's `size_units` (the handler's), with their factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SizeUnit {
    #[default]
    Megabytes,
    Kilobytes,
    Bytes,
}

impl SizeUnit {
    /// Kong's `unit_multiplication_factor`.
    pub fn bytes(self) -> u64 {
        match self {
            SizeUnit::Megabytes => 1 << 20,
            SizeUnit::Kilobytes => 1 << 10,
            SizeUnit::Bytes => 1,
        }
    }
}

fn default_allowed_payload_size() -> i64 {
    128
}

impl Validate for Config {}

/// `request-size-limiting` (PRIORITY 951).
pub struct RequestSizeLimiting;

impl PluginSpec for RequestSizeLimiting {
    const NAME: &'static str = "request-size-limiting";
    const PRIORITY: i32 = 951;
    const KIND: Kind = Kind::Acts;
    type Config = Config;

    fn build(config: Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        // Kong's `allowed_size * factor` is a Lua number; a negative size refuses any body.
        let allowed =
            i128::from(config.allowed_payload_size) * i128::from(config.size_unit.bytes());
        Ok(Some(Arc::new(Handler {
            allowed,
            require_content_length: config.require_content_length,
        })))
    }
}

const EXCEEDED: &str = "Request size limit exceeded";

struct Handler {
    /// The limit in bytes.
    allowed: i128,
    require_content_length: bool,
}

/// A chunked request body's count so far.
#[derive(Clone, Copy)]
struct Counting(u64);

/// Kong's `check_size` answer. Kong answers 417 instead to a client waiting for
/// `100 Continue`; switchyard's engine has sent the 100 and dropped `Expect` before any
/// plugin runs, so the answer is always 413.
fn refusal() -> Flow {
    Flow::Respond(respond::message(StatusCode::PAYLOAD_TOO_LARGE, EXCEEDED))
}

impl Plugin for Handler {
    fn name(&self) -> &str {
        RequestSizeLimiting::NAME
    }
    fn priority(&self) -> i32 {
        RequestSizeLimiting::PRIORITY
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS | Phases::REQUEST_BODY
    }

    fn access(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        let declared = req
            .header("content-length")
            .and_then(|cl| cl.trim().parse::<u64>().ok());
        if let Some(length) = declared {
            if i128::from(length) > self.allowed {
                return refusal();
            }
            return Flow::Continue;
        }
        let chunked = ctx.body_length.is_none();
        if self.require_content_length && !chunked {
            return Flow::Respond(respond::message(
                StatusCode::LENGTH_REQUIRED,
                "A valid Content-Length header is required",
            ));
        }
        if chunked {
            ctx.extensions.insert(Counting(0));
        }
        Flow::Continue
    }

    /// It only counts: a body with a Content-Length goes upstream with it, as in Kong.
    fn keeps_request_length(&self) -> bool {
        true
    }

    fn request_body(&self, ctx: &mut Ctx<'_>, chunk: &mut Chunk) -> BodyFlow {
        let Some(c) = ctx.extensions.get_mut::<Counting>() else {
            return BodyFlow::Continue;
        };
        c.0 += chunk.data.len() as u64;
        if i128::from(c.0) > self.allowed {
            return BodyFlow::Reject {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: EXCEEDED,
            };
        }
        BodyFlow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::schema::parse;

    #[test]
    fn defaults() {
        let c: Config = parse("{}").unwrap();
        assert_eq!(c.allowed_payload_size, 128);
        assert_eq!(c.size_unit, SizeUnit::Megabytes);
        assert_eq!(c.size_unit.bytes(), 1048576);
        assert!(!c.require_content_length);
    }

    #[test]
    fn all_fields() {
        let c: Config =
            parse("allowed_payload_size: 10\nsize_unit: bytes\nrequire_content_length: true")
                .unwrap();
        assert_eq!((c.allowed_payload_size, c.size_unit), (10, SizeUnit::Bytes));
        assert!(c.require_content_length);
    }

    #[test]
    fn rules() {
        assert_eq!(
            parse::<Config>("size_unit: gigabytes").unwrap_err(),
            ["size_unit: `gigabytes` is not one of: megabytes, kilobytes, bytes"]
        );
        let errs = parse::<Config>("allowed_payload_size: 1.5").unwrap_err();
        assert!(
            errs[0].starts_with("allowed_payload_size: expected an integer"),
            "{errs:?}"
        );
        let errs = parse::<Config>("require_content_length: 'yes'").unwrap_err();
        assert!(
            errs[0].starts_with("require_content_length: expected true or false"),
            "{errs:?}"
        );
        let errs = parse::<Config>("size: 1").unwrap_err();
        assert!(
            errs[0].starts_with("size: unknown field `size`"),
            "{errs:?}"
        );
    }

    /// Configs from real users' files and the conformance cases.
    #[test]
    fn real_configs() {
        for yaml in [
            "allowed_payload_size: 10\nsize_unit: megabytes\nrequire_content_length: false",
            "allowed_payload_size: 10\nsize_unit: bytes",
            "allowed_payload_size: 1\nsize_unit: kilobytes",
            "allowed_payload_size: 1\nrequire_content_length: true",
            "allowed_payload_size: 1",
        ] {
            if let Err(e) = parse::<Config>(yaml) {
                panic!("{yaml}\n{e:?}");
            }
        }
    }
}
