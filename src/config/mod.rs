//! Configuration: files ─▶ spanned trees (`node`) ─▶ raw types per dialect (`kong`, `ocelot`,
//! via `de`) ─▶ one validated model (`model`), with every problem collected in `diag`.

pub mod de;
pub mod diag;
pub mod node;
