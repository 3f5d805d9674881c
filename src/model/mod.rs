//! The input model: profiles, modules and option types, read with positions.
//! Depends on nothing but `source` and `diag`.
pub mod module;
pub mod profile;
pub mod raw;
pub mod reader;
pub mod types;
