//! `grpc-gateway` (PRIORITY 998, access, header_filter and body_filter): transcodes
//! REST/JSON requests to a gRPC upstream and its answers back to JSON, following the
//! `google.api.http` annotations of a `.proto` file. Not served yet: its config is checked
//! against Kong's schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCx, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/grpc-gateway/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// The path of the `.proto` file describing the service.
    pub proto: Option<String>,
}

impl Validate for Config {}

/// `grpc-gateway` (PRIORITY 998).
pub struct GrpcGateway;

impl PluginSpec for GrpcGateway {
    const NAME: &'static str = "grpc-gateway";
    const PRIORITY: i32 = 998;
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
        assert_eq!(parse::<Config>("{}").unwrap().proto, None);
        // From a real user's file.
        let c: Config = parse("proto: /tmp/protos/moviesapp.proto").unwrap();
        assert_eq!(c.proto.as_deref(), Some("/tmp/protos/moviesapp.proto"));
        let errs = parse::<Config>("protos: x.proto").unwrap_err();
        assert!(
            errs[0].starts_with("protos: unknown field `protos`"),
            "{errs:?}"
        );
        let errs = parse::<Config>("proto: [a]").unwrap_err();
        assert!(errs[0].starts_with("proto: expected a string"), "{errs:?}");
    }
}
