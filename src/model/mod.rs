//! The input model: profiles, modules and option types, read with positions.
//! Depends on nothing but `source` and `diag`.
// Input-derived data is never unwrapped or indexed blindly (issue 8): enforced here,
// not crate-wide, because image/ and vmtest/ are checked by their owners.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]
pub mod module;
pub mod profile;
pub mod raw;
pub mod reader;
pub mod types;
