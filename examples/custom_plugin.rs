//! A gateway with a custom plugin: the whole `switchyard` command line (`run`, `check`,
//! `config`, `explain`), plus `go-powered-by`, the plugin of Kong's Go plugin guide. It adds
//! `X-Powered-By: <poweredby>` to every response of the routes it is on.
//!
//! A Kong user writes `handler.lua` and `schema.lua`; here both are one Rust type:
//! - its config is a serde struct: defaults with `#[serde(default)]`, unknown fields are
//!   errors, and `Validate` holds the rules serde cannot say;
//! - `PluginSpec` names it, gives its PRIORITY and builds it from a checked config;
//! - `Plugin` is the phase trait: it implements only the hooks it needs and says which.
//!
//! ```sh
//! cargo build --release --example custom_plugin
//! target/release/examples/custom_plugin check --config-dir DIR
//! target/release/examples/custom_plugin run --config-dir DIR
//! ```
//!
//! with a `kong.yaml` such as
//!
//! ```yaml
//! plugins:
//! - name: go-powered-by
//!   config: {poweredby: "EIC Kong"}
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use switchyard::gateway::Builder;
use switchyard::plugins::{
    BuildCx, Checks, Ctx, Phases, Plugin, PluginSpec, ResponseHead, Validate,
};

/// The plugin's `config`: what `schema.lua` says in Kong.
#[derive(Debug, Deserialize)]
struct Config {
    /// The header's value (required).
    poweredby: String,
    /// The header's name.
    #[serde(default = "default_header")]
    header: String,
}

fn default_header() -> String {
    "X-Powered-By".into()
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        c.header_name("header", &self.header);
        if self.poweredby.is_empty() {
            c.error("poweredby", "length must be at least 1");
        }
        if HeaderValue::from_str(&self.poweredby).is_err() {
            c.error("poweredby", "not a valid header value");
        }
    }
}

/// What `handler.lua` holds in Kong: the hooks, with the config compiled once.
struct PoweredBy {
    header: HeaderName,
    value: HeaderValue,
}

impl PluginSpec for PoweredBy {
    const NAME: &'static str = "go-powered-by";
    /// Runs late in the response-head phase, after the bundled plugins that change headers.
    const PRIORITY: i32 = 1;
    type Config = Config;

    fn build(config: Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        let header = HeaderName::from_bytes(config.header.as_bytes()).map_err(|e| e.to_string())?;
        let value = HeaderValue::from_str(&config.poweredby).map_err(|e| e.to_string())?;
        Ok(Some(Arc::new(PoweredBy { header, value })))
    }
}

impl Plugin for PoweredBy {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn priority(&self) -> i32 {
        Self::PRIORITY
    }

    /// Only the response head: the proxy keeps its fast paths for everything else.
    fn phases(&self) -> Phases {
        Phases::RESPONSE_HEAD
    }

    fn response_head(&self, _ctx: &mut Ctx<'_>, resp: &mut ResponseHead<'_>) {
        resp.headers_mut()
            .insert(self.header.clone(), self.value.clone());
    }
}

fn main() -> ExitCode {
    Builder::new().plugin::<PoweredBy>().main()
}
