//! Kong's plugin queue record (`typedefs.queue`, `kong/tools/queue_schema.lua`): how the
//! log, metrics and tracing plugins batch and retry what they send.

use serde::Deserialize;

use super::{Checks, join};

/// The plugin queue record (a field not written keeps Kong's default).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Queue {
    pub max_batch_size: i64,
    /// Seconds.
    pub max_coalescing_delay: f64,
    pub max_entries: i64,
    pub max_bytes: Option<i64>,
    /// Seconds; -1: a failed batch is not retried.
    pub max_retry_time: f64,
    /// Seconds.
    pub initial_retry_delay: f64,
    /// Seconds.
    pub max_retry_delay: f64,
    pub concurrency_limit: i64,
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            max_batch_size: 1,
            max_coalescing_delay: 1.0,
            max_entries: 10000,
            max_bytes: None,
            max_retry_time: 60.0,
            initial_retry_delay: 0.01,
            max_retry_delay: 60.0,
            concurrency_limit: 1,
        }
    }
}

impl Queue {
    /// The queue record's rules, with `at` the record's path inside `config`.
    pub fn check(&self, c: &mut Checks, at: &str) {
        let f = |name: &str| join(at, name);
        c.between(&f("max_batch_size"), self.max_batch_size, 1, 1_000_000);
        c.between(
            &f("max_coalescing_delay"),
            self.max_coalescing_delay,
            0.0,
            3600.0,
        );
        c.between(&f("max_entries"), self.max_entries, 1, 1_000_000);
        c.between(
            &f("initial_retry_delay"),
            self.initial_retry_delay,
            0.001,
            1_000_000.0,
        );
        c.between(
            &f("max_retry_delay"),
            self.max_retry_delay,
            0.001,
            1_000_000.0,
        );
        if ![-1, 1].contains(&self.concurrency_limit) {
            c.error(&f("concurrency_limit"), "expected one of: -1, 1");
        }
    }
}
