//! Configuration: files ─▶ spanned trees (`node`; block-style YAML through `yaml_block`) ─▶
//! raw types per dialect (`kong`, via `de`) ─▶ one validated model (`model`), with every
//! problem collected in `diag`. `loader` drives it for a directory; `vault` reads the secret
//! references configs hold instead of secrets.

pub mod de;
pub mod diag;
pub mod kong;
pub mod loader;
pub mod model;
pub mod node;
pub mod ocelot;
pub mod vault;
pub mod yaml_block;
