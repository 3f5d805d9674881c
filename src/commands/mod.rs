//! The verbs that work on profiles and build outputs (build, check, options,
//! explain, diff): argument handling and printing; the work is in the layers.
// Input-derived data is never unwrapped or indexed blindly (issue 8): enforced here,
// not crate-wide, because image/ and vmtest/ are checked by their owners.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]
mod diff;
mod explain;
mod options;

use crate::build::{BuildOptions, build as run_build, check as run_check};
use crate::cli::{BuildArgs, CheckArgs};
use crate::diag::Located;
use serde_json::json;

pub use diff::diff;
pub use explain::explain;
pub use options::{options, options_markdown};

pub fn build(a: &BuildArgs) -> miette::Result<()> {
    let out = run_build(&BuildOptions {
        profile: a.profile.clone(),
        out: a.out.clone(),
        module_dirs: a.modules.dirs.clone(),
    })?;
    if a.json {
        let v = json!({
            "out": a.out,
            "profile": out.manifest.profile,
            "root_hash": out.root_hash,
            "entries": out.manifest.entries.len(),
            "packages": out.manifest.packages,
            "warnings": messages(&out.warnings),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print_warnings(&out.warnings);
        eprintln!(
            "built {} ({} entries, {} packages)",
            a.out.display(),
            out.manifest.entries.len(),
            out.manifest.packages.len()
        );
        println!("{}", out.root_hash);
    }
    Ok(())
}

pub fn check(a: &CheckArgs) -> miette::Result<()> {
    let (config, rendered) = run_check(&a.profile, &a.modules.dirs)?;
    if a.json {
        let v = json!({
            "profile": config.profile.name,
            "ok": true,
            "modules": config.modules.iter().map(|m| &m.name).collect::<Vec<_>>(),
            "entries": rendered.entries.len(),
            "warnings": messages(&config.warnings),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print_warnings(&config.warnings);
        println!(
            "{}: ok ({} modules, {} files and links, every assertion holds)",
            config.profile.name,
            config.modules.len(),
            rendered.entries.len()
        );
    }
    Ok(())
}

fn messages(warnings: &[Located]) -> Vec<String> {
    warnings.iter().map(|w| w.to_string()).collect()
}

fn print_warnings(warnings: &[Located]) {
    for w in warnings {
        eprintln!(
            "{:?}",
            miette::Report::new(
                Located::new(w.code, &w.site, w.message.clone()).label(w.label.clone())
            )
        );
    }
}
