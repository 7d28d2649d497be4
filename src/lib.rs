//! switchyard: a declarative, DB-less API gateway.
//!
//! ```text
//! config files ─▶ config (raw serde types per dialect ─▶ one validated model, with spans)
//!   ─▶ snapshot (compiled, immutable: router, chains, services, consumers; plugins built
//!      through the plugins::registry) ─▶ gateway (atomic swap; watch reloads it)
//!   ─▶ proxy (engine: HTTP/1 server ─▶ pipeline: router ─▶ plugins ─▶ forward ─▶ upstream
//!      client) ─▶ admin
//! wasm: Kong filter_chains as Proxy-Wasm filters on wasmtime, run by the pipeline as the
//!   last plugin of each phase
//! ```
//!
//! `exchange` holds the types every layer shares for one request (context, body, flow); it
//! depends on nothing of theirs.
#![deny(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod exchange;
pub mod fnv;
pub mod gateway;
pub mod ip;
pub mod plugins;
pub mod proxy;
pub mod router;
pub mod snapshot;
pub mod uri;
pub mod wasm;
pub mod watch;
