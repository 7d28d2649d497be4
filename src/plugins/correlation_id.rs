//! `correlation-id` (PRIORITY 100001, access and header_filter): gives each request an ID
//! in a header (`Kong-Request-ID` by default) unless it already has one, generated as a
//! UUID, a UUID with a counter, or nginx's request tracker, and optionally echoes it to the
//! client. As Kong's `kong/plugins/correlation-id/handler.lua`; the id is left in the
//! context (`CorrelationIdValue`) for the log phase, where Kong's serializer has it as
//! `correlation_id`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use http::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::{
    BuildCx, Ctx, Flow, Kind, Phases, Plugin, PluginSpec, Request, ResponseHead, Validate,
};

/// The plugin's `config` (Kong's `kong/plugins/correlation-id/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// A plain string in Kong's schema (not `typedefs.header_name`).
    #[serde(default = "default_header_name")]
    pub header_name: String,
    #[serde(default)]
    pub generator: Generator,
    #[serde(default)]
    pub echo_downstream: bool,
}

/// How IDs are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Generator {
    #[serde(rename = "uuid")]
    Uuid,
    /// One UUID per worker, then `#1`, `#2`, ...
    #[default]
    #[serde(rename = "uuid#counter")]
    UuidCounter,
    /// nginx's `$request_id`-like tracker.
    #[serde(rename = "tracker")]
    Tracker,
}

fn default_header_name() -> String {
    "Kong-Request-ID".to_string()
}

impl Validate for Config {}

/// `correlation-id` (PRIORITY 100001).
pub struct CorrelationId;

impl PluginSpec for CorrelationId {
    const NAME: &'static str = "correlation-id";
    const PRIORITY: i32 = 100001;
    const KIND: Kind = Kind::Acts;
    type Config = Config;

    fn build(config: Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        // Kong's schema takes any string; one that cannot be a header name cannot be set.
        let header = HeaderName::from_bytes(config.header_name.as_bytes())
            .map_err(|_| format!("'{}' is not a valid header name", config.header_name))?;
        Ok(Some(Arc::new(Handler {
            header,
            generator: config.generator,
            echo_downstream: config.echo_downstream,
        })))
    }
}

/// The request's correlation id (the client's or the generated one), in the context's
/// extensions from the access phase on: log plugins read it from there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelationIdValue(pub HeaderValue);

struct Handler {
    header: HeaderName,
    generator: Generator,
    echo_downstream: bool,
}

/// A version 4 UUID from the system's random source, as Kong's `kong.tools.uuid` makes one.
pub fn uuid_v4() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        // No system randomness: the request id generator's bytes still make the id unique.
        let id = crate::exchange::RequestId::new();
        for (i, c) in id.as_str().as_bytes().chunks(2).take(16).enumerate() {
            b[i] = c
                .iter()
                .fold(0, |acc, d| acc.wrapping_mul(16).wrapping_add(*d));
        }
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Kong makes one UUID per worker at `init_worker` and counts from it; switchyard's workers
/// share one process, so the UUID and the counter are the process's.
fn uuid_counter() -> String {
    static BASE: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    format!("{}#{n}", BASE.get_or_init(uuid_v4))
}

/// Kong's `tracker`: `server_addr-server_port-pid-connection-connection_requests-time`.
/// Plugins do not see nginx's connection serial and its request count: the client's port
/// stands for the connection, and a process-wide sequence for the request count, so that
/// two ids still differ.
fn tracker(ctx: &Ctx<'_>) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed) + 1;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    format!(
        "{}-{}-{}-{}-{n}-{now:.3}",
        ctx.local.ip(),
        ctx.local.port(),
        std::process::id(),
        ctx.client.port()
    )
}

impl Handler {
    fn generate(&self, ctx: &Ctx<'_>) -> Option<HeaderValue> {
        let id = match self.generator {
            Generator::Uuid => uuid_v4(),
            Generator::UuidCounter => uuid_counter(),
            Generator::Tracker => tracker(ctx),
        };
        HeaderValue::from_str(&id).ok()
    }
}

impl Plugin for Handler {
    fn name(&self) -> &str {
        CorrelationId::NAME
    }
    fn priority(&self) -> i32 {
        CorrelationId::PRIORITY
    }
    fn phases(&self) -> Phases {
        if self.echo_downstream {
            Phases::ACCESS | Phases::RESPONSE_HEAD
        } else {
            Phases::ACCESS
        }
    }

    /// The client's id when it sent a non-empty one (kept as sent), else a new one on the
    /// upstream request.
    fn access(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        let id = match req.headers().get(&self.header).filter(|v| !v.is_empty()) {
            Some(v) => Some(v.clone()),
            None => {
                let id = self.generate(ctx);
                if let Some(v) = &id {
                    req.headers_mut().insert(self.header.clone(), v.clone());
                }
                id
            }
        };
        if let Some(v) = id {
            ctx.extensions.insert(CorrelationIdValue(v));
        }
        Flow::Continue
    }

    /// `echo_downstream`: the same id on the response (a new one when access did not run,
    /// as Kong makes one in header_filter then).
    fn response_head(&self, ctx: &mut Ctx<'_>, resp: &mut ResponseHead<'_>) {
        let id = match ctx.extensions.get::<CorrelationIdValue>() {
            Some(v) => Some(v.0.clone()),
            None => self.generate(ctx),
        };
        if let Some(v) = id {
            resp.headers_mut().insert(self.header.clone(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::schema::parse;

    #[test]
    fn defaults() {
        let c: Config = parse("{}").unwrap();
        assert_eq!(c.header_name, "Kong-Request-ID");
        assert_eq!(c.generator, Generator::UuidCounter);
        assert!(!c.echo_downstream);
    }

    #[test]
    fn all_fields() {
        let c: Config =
            parse("header_name: X-Request-ID\ngenerator: tracker\necho_downstream: true").unwrap();
        assert_eq!(c.header_name, "X-Request-ID");
        assert_eq!(c.generator, Generator::Tracker);
        assert!(c.echo_downstream);
        let c: Config = parse("generator: 'uuid#counter'").unwrap();
        assert_eq!(c.generator, Generator::UuidCounter);
    }

    #[test]
    fn rules() {
        assert_eq!(
            parse::<Config>("generator: ulid").unwrap_err(),
            ["generator: `ulid` is not one of: uuid, uuid#counter, tracker"]
        );
        let errs = parse::<Config>("echo_downstream: 'true'").unwrap_err();
        assert!(
            errs[0].starts_with("echo_downstream: expected true or false"),
            "{errs:?}"
        );
        let errs = parse::<Config>("header: X-Id").unwrap_err();
        assert!(
            errs[0].starts_with("header: unknown field `header`"),
            "{errs:?}"
        );
    }

    #[test]
    fn uuids_are_version_4_and_the_counter_counts() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
        assert_ne!(u, uuid_v4());
        let (a, n) = uuid_counter()
            .split_once('#')
            .map(|(a, n)| (a.to_string(), n.parse::<u64>().unwrap()))
            .unwrap();
        let next = uuid_counter();
        assert!(next.starts_with(&a));
        assert!(next.split_once('#').unwrap().1.parse::<u64>().unwrap() > n);
    }

    /// Configs from real users' files and the conformance cases.
    #[test]
    fn real_configs() {
        for yaml in [
            "header_name: X-Request-ID\ngenerator: uuid\necho_downstream: true",
            "header_name: X-Correlation-ID\ngenerator: uuid\necho_downstream: true",
            "header_name: X-Call-ID\ngenerator: uuid\necho_downstream: true",
            "generator: uuid\necho_downstream: true",
            "echo_downstream: true",
            "header_name: Foo-Bar-Id\ngenerator: uuid",
        ] {
            if let Err(e) = parse::<Config>(yaml) {
                panic!("{yaml}\n{e:?}");
            }
        }
    }
}
