//! `grpc-web` (PRIORITY 3, access, header_filter and body_filter): lets gRPC-Web browser
//! clients reach a gRPC upstream, converting the gRPC-Web framing (and, with a `.proto`
//! file, JSON payloads) both ways and answering CORS preflights. Not served yet: its config
//! is checked against Kong's schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCx, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/grpc-web/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// The path of the `.proto` file, needed to transcode JSON payloads.
    pub proto: Option<String>,
    pub pass_stripped_path: Option<bool>,
    #[serde(default = "default_allow_origin_header")]
    pub allow_origin_header: String,
}

fn default_allow_origin_header() -> String {
    "*".to_string()
}

impl Validate for Config {}

/// `grpc-web` (PRIORITY 3).
pub struct GrpcWeb;

impl PluginSpec for GrpcWeb {
    const NAME: &'static str = "grpc-web";
    const PRIORITY: i32 = 3;
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
    fn schema() {
        let c: Config = parse("{}").unwrap();
        assert_eq!(c.proto, None);
        assert_eq!(c.pass_stripped_path, None);
        assert_eq!(c.allow_origin_header, "*");
        let c: Config = parse(
            "proto: /protos/hello.proto\npass_stripped_path: true\nallow_origin_header: https://app.example.com",
        )
        .unwrap();
        assert_eq!(c.pass_stripped_path, Some(true));
        assert_eq!(c.allow_origin_header, "https://app.example.com");
        let errs = parse::<Config>("allow_origin: x").unwrap_err();
        assert!(
            errs[0].starts_with("allow_origin: unknown field"),
            "{errs:?}"
        );
        let errs = parse::<Config>("pass_stripped_path: yes").unwrap_err();
        assert!(
            errs[0].starts_with("pass_stripped_path: expected true or false"),
            "{errs:?}"
        );
    }
}
