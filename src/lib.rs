//! hardroot: profile → evaluate → render → emit → image → vm-test.
//! See ARCHITECTURE.md for what each layer may depend on.
pub mod build;
pub mod cli;
pub mod commands;
pub mod compliance;
pub mod diag;
pub mod emit;
pub mod eval;
pub mod exposure;
#[doc(hidden)]
pub mod fuzzing;
pub mod image;
pub mod lynis;
pub mod model;
pub mod oci;
pub mod render;
pub mod report;
pub mod run;
pub mod source;
pub mod vmtest;
