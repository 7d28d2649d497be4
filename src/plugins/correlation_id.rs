//! `correlation-id` (PRIORITY 100001, access and header_filter): gives each request an ID
//! in a header (`Kong-Request-ID` by default) unless it already has one, generated as a
//! UUID, a UUID with a counter, or nginx's request tracker, and optionally echoes it to the
//! client. Not served yet: its config is checked against Kong's schema, and the routes it
//! applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCx, Kind, Plugin, PluginSpec, Validate};

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
