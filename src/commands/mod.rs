//! The CLI's verbs: their arguments (args.rs, clap) and their printing; the
//! work is in the layers. build, check, options, explain and diff work on
//! profiles and build outputs; pipeline.rs drives image, verify, cache,
//! push, pull, vm-test, report and run.
// Input-derived data is never unwrapped or indexed blindly (issue 8): enforced here,
// not crate-wide, because image/ and vmtest/ are checked by their owners.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]
pub mod args;
mod diff;
mod explain;
mod options;
mod pipeline;

use crate::build::{BuildOptions, build as run_build, check as run_check};
use crate::diag::Located;
use args::{BuildArgs, CheckArgs};
use serde_json::json;

pub use diff::diff;
pub use explain::explain;
pub use options::{options, options_markdown};
pub use pipeline::{cache, image, image_fleet, pull, push, report, run, verify, vm_test};

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
