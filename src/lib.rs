//! switchyard: a declarative, DB-less API gateway.
//!
//! config files ─▶ `config` (raw serde types per dialect ─▶ one validated model, with spans)
//! ─▶ `snapshot` (compiled, immutable: router, services, plugin chains) ─▶ `gateway` (atomic
//! swap) ─▶ `proxy` (HTTP/1.1 server ─▶ `router` ─▶ `plugins` ─▶ upstream client) ─▶ `admin`.
#![deny(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod fnv;
pub mod gateway;
pub mod plugins;
pub mod proxy;
pub mod router;
pub mod snapshot;
pub mod watch;
