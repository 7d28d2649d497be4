//! The benchmark's gateway: exactly the `switchyard` command line (`run`, `check`, `config`,
//! `explain`), plus three no-op plugins, `bench-noop-1`, `bench-noop-2` and `bench-noop-3`,
//! that `bench/run.sh --sections plugins` puts on a route to measure what a plugin chain
//! costs per request. Each has an empty config and two hooks, `access` and `response_head`
//! (Kong's `header_filter`), that do nothing and return: the cost measured is the pipeline's
//! (building the chain's context, calling through it), not a plugin's own work: a
//! `response_head` hook that does not ask for the headers leaves the head unparsed.
//!
//! ```sh
//! cargo build --release --example bench_gateway
//! target/release/examples/bench_gateway run --config-dir DIR
//! ```
//!
//! with a route such as
//!
//! ```yaml
//! routes:
//! - name: r
//!   paths: ["/"]
//!   plugins:
//!   - name: bench-noop-1
//!   - name: bench-noop-2
//!   - name: bench-noop-3
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use serde::Deserialize;
use switchyard::gateway::Builder;
use switchyard::plugins::{
    BuildCx, Ctx, Flow, Phases, Plugin, PluginSpec, Request, ResponseHead, Validate,
};

/// The plugins' `config`: nothing (an unknown field is an error, as for every plugin).
#[derive(Debug, Default, Deserialize)]
struct Empty {}

impl Validate for Empty {}

/// One no-op plugin type per name, each with its own PRIORITY.
macro_rules! noop_plugin {
    ($ty:ident, $name:literal, $priority:literal) => {
        struct $ty;

        impl PluginSpec for $ty {
            const NAME: &'static str = $name;
            const PRIORITY: i32 = $priority;
            type Config = Empty;

            fn build(_: Empty, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
                Ok(Some(Arc::new($ty)))
            }
        }

        impl Plugin for $ty {
            fn name(&self) -> &str {
                Self::NAME
            }

            fn priority(&self) -> i32 {
                Self::PRIORITY
            }

            fn phases(&self) -> Phases {
                Phases::ACCESS | Phases::RESPONSE_HEAD
            }

            fn access(&self, _ctx: &mut Ctx<'_>, _req: &mut Request<'_>) -> Flow {
                Flow::Continue
            }

            fn response_head(&self, _ctx: &mut Ctx<'_>, _resp: &mut ResponseHead<'_>) {}
        }
    };
}

noop_plugin!(Noop1, "bench-noop-1", 1003);
noop_plugin!(Noop2, "bench-noop-2", 1002);
noop_plugin!(Noop3, "bench-noop-3", 1001);

fn main() -> ExitCode {
    Builder::new()
        .plugin::<Noop1>()
        .plugin::<Noop2>()
        .plugin::<Noop3>()
        .main()
}
