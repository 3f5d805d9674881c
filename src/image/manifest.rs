//! Reading what `hardroot build` wrote: manifest.json (the overlay's entries,
//! packages and units) and config.json (the `system` module's image settings).
//! The image stage reads the files rather than the core's types so that it can
//! also work from any build directory written earlier.
use super::error::{Result, input_err, io_err};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub profile: String,
    pub source_date_epoch: i64,
    pub root_hash: String,
    pub packages: Vec<String>,
    #[serde(default)]
    pub units: Units,
    /// Paths modules remove from the base (`[module] remove`): scrubbed like `system.scrub`.
    #[serde(default)]
    pub remove: Vec<String>,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Units {
    #[serde(default)]
    pub disable: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    #[serde(default = "default_mode")]
    pub mode: String,
    #[serde(default = "root_name")]
    pub owner: String,
    #[serde(default = "root_name")]
    pub group: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub target: Option<String>,
    /// A file's content hash, as `hardroot build` wrote it (the SBOM lists it).
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub early: bool,
    /// Empty (or absent) for parent folders the emitter added implicitly.
    #[serde(default)]
    pub module: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

fn default_mode() -> String {
    "0644".into()
}
fn root_name() -> String {
    "root".into()
}

impl Entry {
    /// Implied parent folders must not change the owner or mode of a folder
    /// the base already has (e.g. /var/lib/postgresql belongs to postgres).
    pub fn implicit(&self) -> bool {
        self.module.as_deref().is_none_or(str::is_empty)
    }

    pub fn mode_bits(&self) -> Result<u32> {
        u32::from_str_radix(&self.mode, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| {
                input_err(
                    &self.path,
                    format!("mode {:?} is not an octal mode", self.mode),
                    "use e.g. \"0644\"",
                )
            })
    }
}

/// Image settings: the `system` module's evaluated options.
#[derive(Debug, Clone, Deserialize)]
pub struct SystemSettings {
    pub suite: String,
    pub architecture: String,
    pub variant: String,
    #[serde(default)]
    pub dpkg_path_exclude: Vec<String>,
    #[serde(default)]
    pub dpkg_path_include: Vec<String>,
    #[serde(default)]
    pub scrub: Vec<String>,
    pub image_free_mib: u64,
    #[serde(default = "default_label")]
    pub root_label: String,
    /// Words after hardroot's own on the kernel command line (both boot paths).
    #[serde(default)]
    pub kernel_cmdline_extra: Vec<String>,
}

fn default_label() -> String {
    "root".into()
}

/// Everything `hardroot build` left in its output folder.
#[derive(Debug, Clone)]
pub struct BuildDir {
    pub dir: PathBuf,
    pub overlay: PathBuf,
    pub manifest: Manifest,
    pub system: SystemSettings,
    pub config: serde_json::Value,
}

impl BuildDir {
    pub fn load(dir: &Path) -> Result<BuildDir> {
        let manifest: Manifest = read_json(&dir.join("manifest.json"))?;
        let config: serde_json::Value = read_json(&dir.join("config.json"))?;
        let mut system = system_settings(&dir.join("config.json"), &config)?;
        system.scrub.extend(manifest.remove.iter().cloned());
        check_entries(&manifest)?;
        Ok(BuildDir {
            dir: dir.to_path_buf(),
            overlay: dir.join("overlay"),
            manifest,
            system,
            config,
        })
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(io_err("reading", path))?;
    serde_json::from_str(&text).map_err(|e| {
        input_err(
            path,
            format!("not a valid hardroot build file: {e}"),
            "rebuild it with `hardroot build`",
        )
    })
}

fn system_settings(path: &Path, config: &serde_json::Value) -> Result<SystemSettings> {
    let Some(system) = config.get("system") else {
        return Err(input_err(
            path,
            "the profile does not import the `system` module",
            "add \"system\" to [profile] imports: it declares the boot packages and image settings",
        ));
    };
    serde_json::from_value(system.clone()).map_err(|e| {
        input_err(
            path,
            format!("system options: {e}"),
            "check the `system` module's options",
        )
    })
}

/// Paths go into debugfs commands and shell hooks, so they must be plain:
/// relative, no `..`, no whitespace, quotes or control characters.
fn check_entries(manifest: &Manifest) -> Result<()> {
    for e in &manifest.entries {
        check_path(&e.path)?;
        if e.kind == EntryKind::Symlink && e.target.as_deref().is_none_or(|t| !plain(t)) {
            return Err(input_err(
                &e.path,
                "symlink without a plain target",
                "fix the module's [[symlinks]]",
            ));
        }
    }
    for unit in &manifest.units.disable {
        check_path(unit)?;
    }
    Ok(())
}

pub fn check_path(path: &str) -> Result<()> {
    let ok = !path.is_empty()
        && !path.starts_with('/')
        && plain(path)
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(())
    } else {
        Err(input_err(
            path,
            "not a plain relative path",
            "overlay paths may not hold whitespace, quotes, backslashes or `..`",
        ))
    }
}

fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !"\"'\\`$".contains(c))
}
