//! Finding modules on disk and ordering them: dependencies first, cycles reported.
use crate::diag::Located;
use crate::model::module::{Module, load_module, valid_module_name};
use crate::model::profile::Profile;
use crate::source::Site;
use std::path::{Path, PathBuf};

/// `--modules` folders first (so a user can override a module), then $HARDROOT_MODULES,
/// then `modules/` beside each profile file's folder (top profile first), so an
/// imported profile finds its modules wherever it is imported from.
pub fn search_dirs(profile: &Profile, extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = extra.to_vec();
    if let Some(env) = std::env::var_os("HARDROOT_MODULES") {
        dirs.extend(std::env::split_paths(&env));
    }
    for file in &profile.files {
        let parent = file.path.parent().unwrap_or(Path::new("."));
        for d in [parent.join("..").join("modules"), parent.join("modules")] {
            let d = std::fs::canonicalize(&d).unwrap_or(d);
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    dirs
}

pub fn load_modules(profile: &Profile, dirs: &[PathBuf]) -> Result<Vec<Module>, Located> {
    let mut done: Vec<Module> = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    for (name, site) in &profile.modules {
        visit(name, site, dirs, &mut done, &mut stack)?;
    }
    Ok(done)
}

fn visit(
    name: &str,
    site: &Site,
    dirs: &[PathBuf],
    done: &mut Vec<Module>,
    stack: &mut Vec<String>,
) -> Result<(), Located> {
    if done.iter().any(|m| m.name == name) {
        return Ok(());
    }
    if let Some(pos) = stack.iter().position(|s| s == name) {
        let chain = stack
            .iter()
            .skip(pos)
            .map(String::as_str)
            .chain([name])
            .collect::<Vec<_>>()
            .join(" → ");
        return Err(Located::new("hardroot::import-cycle", site, format!("module import cycle: {chain}"))
            .help("a module may not import itself through others; move the shared options into a module both import"));
    }
    let dir = find(name, site, dirs)?;
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let module = load_module(name, &dir)?;
    stack.push(name.to_string());
    for (import, isite) in &module.imports {
        visit(import, isite, dirs, done, stack)?;
    }
    stack.pop();
    done.push(module);
    Ok(())
}

fn find(name: &str, site: &Site, dirs: &[PathBuf]) -> Result<PathBuf, Located> {
    if !valid_module_name(name) {
        return Err(Located::new("hardroot::unknown-module", site, format!("{name:?} is not a module name"))
            .help("module names are lowercase identifiers like `ssh` or `os_hardening`; profiles are imported by a path ending in .toml"));
    }
    if let Some(dir) = dirs
        .iter()
        .map(|d| d.join(name))
        .find(|d| d.join("module.toml").is_file())
    {
        return Ok(dir);
    }
    let known: Vec<String> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .filter(|e| e.path().join("module.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let searched: Vec<String> = dirs
        .iter()
        .map(|d| crate::source::display_path(d))
        .collect();
    Err(Located::new(
        "hardroot::unknown-module",
        site,
        format!(
            "no module `{name}`{}",
            crate::model::types::did_you_mean(name, &known)
        ),
    )
    .label("imported here")
    .help(format!(
        "searched {}; a module is a folder with a module.toml",
        searched.join(", ")
    )))
}
