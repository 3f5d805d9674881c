//! hardroot: profile → evaluate → render → emit → image → vm-test.
//! See ARCHITECTURE.md for what each layer may depend on.
pub mod cli;
pub mod image;
pub mod vmtest;
