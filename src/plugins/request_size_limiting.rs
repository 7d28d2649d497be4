//! `request-size-limiting` (PRIORITY 951, access): refuses with 413 a request whose body is
//! larger than `allowed_payload_size` (in bytes, kilobytes or megabytes), and optionally one
//! without a valid `Content-Length`. Not served yet: its config is checked against Kong's
//! schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCx, Kind, Plugin, PluginSpec, Validate};

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

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
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
