//! switchyard: a declarative, DB-less API gateway.
//!
//! config files ─▶ `config` (raw serde types per dialect ─▶ one validated model, with spans)
//! ─▶ `snapshot` (compiled, immutable: router, services, plugin chains) ─▶ `watch` (atomic swap)
//! ─▶ `proxy` (hyper server ─▶ `router` ─▶ `plugins` ─▶ upstream client) ─▶ `admin`.
#![deny(unsafe_code)]

pub mod config;
