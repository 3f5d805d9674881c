//! The Debian base: mmdebstrap with exactly the profile's package set, scrubbed
//! to golden-image state, clamped to SOURCE_DATE_EPOCH, packed once into ext4
//! and kept in the cache under its key.
use super::cache::{Cache, EarlyFile, KeyInputs, NamedHash, sha256_file};
use super::error::{ImageError, Result, input_err, io_err};
use super::hygiene::{self, Scope};
use super::manifest::{BuildDir, EntryKind};
use super::progress::Step;
use super::shared::{self, SharedCache, Transfer};
use super::{fresh, fsutil, pack, tools};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the image stage needs to know about a cached base without walking it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseMeta {
    pub key: String,
    pub inputs: serde_json::Value,
    pub packages: Vec<Package>,
    pub users: BTreeMap<String, u32>,
    pub groups: BTreeMap<String, u32>,
    /// Every path of the tree: "d", "f", "o" (other) or "l:<target>".
    pub paths: BTreeMap<String, String>,
    pub kernel: String,
    pub image_bytes: u64,
    pub used_bytes: u64,
    pub source_date_epoch: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
}

pub struct Base {
    pub dir: PathBuf,
    pub meta: BaseMeta,
    /// The local cache had it.
    pub from_cache: bool,
    /// It came from the shared cache (`--cache-from`) instead of a bootstrap.
    pub pulled: Option<Transfer>,
    /// This run sent it to the shared cache (`--cache-to`), which lacked it.
    pub pushed: Option<Transfer>,
    /// The cached base was stale: these packages changed in the archive, and
    /// this run bootstrapped it anew.
    pub refreshed: Vec<fresh::Upgrade>,
}

impl Base {
    pub fn image(&self) -> PathBuf {
        self.dir.join("base.img")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
}

/// Host apt sources, read at run time: the mirror is never written by us.
pub fn host_sources() -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let list = Path::new("/etc/apt/sources.list");
    if list.metadata().is_ok_and(|m| m.len() > 0) {
        found.push(list.to_path_buf());
    }
    let dir = Path::new("/etc/apt/sources.list.d");
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut more: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "list" || x == "sources"))
            .collect();
        more.sort();
        found.extend(more);
    }
    if found.is_empty() {
        return Err(input_err(
            "/etc/apt/sources.list.d",
            "no apt sources configured on this host",
            "configure apt (a *.sources or sources.list file) or pass --sources FILE",
        ));
    }
    Ok(found)
}

pub fn key_inputs(build: &BuildDir, sources: &[PathBuf], mmdebstrap: String) -> Result<KeyInputs> {
    let s = &build.system;
    let mut packages = build.manifest.packages.clone();
    packages.sort();
    packages.dedup();
    let sources = sources
        .iter()
        .map(|p| {
            Ok(NamedHash {
                name: p.display().to_string(),
                sha256: sha256_file(p)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(KeyInputs {
        format: KeyInputs::format(),
        suite: s.suite.clone(),
        architecture: s.architecture.clone(),
        variant: s.variant.clone(),
        packages,
        mmdebstrap,
        sources,
        dpkg_path_exclude: s.dpkg_path_exclude.clone(),
        dpkg_path_include: s.dpkg_path_include.clone(),
        scrub: s.scrub.clone(),
        early: early_files(build)?,
        source_date_epoch: build.manifest.source_date_epoch,
        image_free_mib: s.image_free_mib,
        root_label: s.root_label.clone(),
        pins: Vec::new(),
        identity: None,
    })
}

fn early_files(build: &BuildDir) -> Result<Vec<EarlyFile>> {
    let mut out = Vec::new();
    for e in build
        .manifest
        .entries
        .iter()
        .filter(|e| e.early && e.kind == EntryKind::File)
    {
        let src = build.overlay.join(&e.path);
        out.push(EarlyFile {
            path: e.path.clone(),
            mode: e.mode.clone(),
            sha256: sha256_file(&src)?,
        });
    }
    Ok(out)
}

pub struct Request<'a> {
    pub cache: &'a Cache,
    pub inputs: &'a KeyInputs,
    pub build: &'a BuildDir,
    pub sources: &'a [PathBuf],
    pub rebuild: bool,
    pub log_dir: &'a Path,
    pub quiet: bool,
    pub shared: &'a SharedCache,
}

/// Returns the cached base for the inputs; on a miss it is fetched from the
/// shared cache (`--cache-from`) or else bootstrapped, and with `--cache-to`
/// sent there when the shared cache lacks it. A base that is there but that
/// the archive has moved past (fresh.rs) is bootstrapped anew, and replaces
/// the shared cache's copy. The returned lock (shared) must be held while
/// the entry is read.
pub fn ensure(req: &Request) -> Result<(Base, std::fs::File)> {
    let key = req.inputs.key();
    let entry = req.cache.entry(&key);
    let mut built = false;
    let mut pulled = None;
    let mut pushed = None;
    let mut refreshed = Vec::new();
    {
        let _exclusive = req.cache.lock(&key, true)?;
        let mut have = !req.rebuild && entry.join("meta.json").is_file();
        if !have
            && !req.rebuild
            && let Some(from) = req.shared.from.as_deref()
            && let shared::Fetched::Pulled(t) = shared::fetch(req.cache, from, &key, req.quiet)?
        {
            pulled = Some(t);
            have = true;
        }
        if have {
            refreshed = stale_packages(req, &entry);
        }
        if !have || !refreshed.is_empty() {
            build_entry(req, &key)?;
            built = true;
            pulled = None;
        }
        if let Some(to) = req.shared.to.as_deref() {
            let push = if refreshed.is_empty() {
                shared::Push::IfMissing
            } else {
                shared::Push::Replace
            };
            pushed = shared::store(req.cache, to, &key, push, req.quiet)?;
        }
    }
    // Entries are immutable once published, so a shared lock is enough to read one.
    let shared = req.cache.lock(&key, false)?;
    req.cache.touch(&key);
    let meta = read_meta(&entry)?;
    Ok((
        Base {
            dir: entry,
            meta,
            from_cache: !built && pulled.is_none(),
            pulled,
            pushed,
            refreshed,
        },
        shared,
    ))
}

/// What the archive serves newer than the base at `entry` has; empty when
/// it is current, when the build is pinned (a rebuild must not move), or
/// when the archive cannot be asked (then a warning says the base is used
/// as it is: an offline build still works).
fn stale_packages(req: &Request, entry: &Path) -> Vec<fresh::Upgrade> {
    if !req.inputs.pins.is_empty() {
        return Vec::new();
    }
    let step = Step::start(
        "check_archive",
        "asking the archive whether the cached base is current",
        req.quiet,
    );
    let arch = &req.build.system.architecture;
    match fresh::check(req.cache, req.sources, arch, &entry.join("rootfs")) {
        fresh::Freshness::Current => {
            step.done("current");
            Vec::new()
        }
        fresh::Freshness::Stale(up) => {
            step.done(&format!("{}: bootstrapping it anew", fresh::describe(&up)));
            up
        }
        fresh::Freshness::Unknown(why) => {
            step.done("unknown");
            super::progress::warn(&format!(
                "could not ask the archive for updates ({why}); using the cached base as it is"
            ));
            Vec::new()
        }
    }
}

pub(super) fn read_meta(entry: &Path) -> Result<BaseMeta> {
    let path = entry.join("meta.json");
    parse_meta(
        &path,
        &path,
        "corrupt cache entry",
        "run again with --rebuild-base",
    )
}

/// PATH's meta.json; errors name it as `shown` and say `problem` and `hint`
/// (a local entry and one fetched from a registry are mended differently).
pub(super) fn parse_meta(path: &Path, shown: &Path, problem: &str, hint: &str) -> Result<BaseMeta> {
    let text = std::fs::read_to_string(path).map_err(io_err("reading", shown))?;
    serde_json::from_str(&text).map_err(|e| input_err(shown, format!("{problem}: {e}"), hint))
}

fn build_entry(req: &Request, key: &str) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix(&super::leftovers::prefix(key))
        .tempdir_in(req.cache.base_dir())
        .map_err(io_err("creating a temp folder in", req.cache.base_dir()))?;
    let sde = req.inputs.source_date_epoch;
    let root = tmp.path().join("rootfs");
    bootstrap(req, tmp.path(), &root)?;
    check_pins(&req.inputs.pins, &dpkg_packages(&root)?)?;
    let step = Step::start("scrub_base", "scrubbing and checking the base", req.quiet);
    scrub(&root, &req.build.system.scrub)?;
    fsutil::clamp_times(&root, sde)?;
    let bad = hygiene::check(&root, Scope::Root)?;
    if !bad.is_empty() {
        return Err(ImageError::Hygiene { violations: bad });
    }
    let survey = fsutil::survey(&root)?;
    step.done("");
    let kernel = copy_boot_files(&root, tmp.path())?;
    let meta = pack_base(req, &root, tmp.path(), survey, kernel)?;
    write_meta(tmp.path(), &meta)?;
    publish(req.cache, tmp, key)
}

fn bootstrap(req: &Request, tmp: &Path, root: &Path) -> Result<()> {
    let step = Step::start(
        "bootstrap",
        format!(
            "bootstrapping {} packages with mmdebstrap",
            req.inputs.packages.len()
        ),
        req.quiet,
    );
    let log = req.log_dir.join("mmdebstrap.log");
    let _ = std::fs::remove_file(&log);
    let mut cmd = mmdebstrap_command(req, tmp, root)?;
    tools::run_logged(&mut cmd, &log)?;
    step.done("");
    Ok(())
}

fn mmdebstrap_command(req: &Request, tmp: &Path, root: &Path) -> Result<std::process::Command> {
    let s = &req.build.system;
    tools::require(tools::UNSHARE)?;
    let mut cmd = tools::contained(tools::MMDEBSTRAP.0);
    cmd.env(
        "SOURCE_DATE_EPOCH",
        req.inputs.source_date_epoch.to_string(),
    );
    cmd.arg("--mode=root").arg("--verbose");
    cmd.arg(format!("--variant={}", s.variant));
    cmd.arg(format!("--architectures={}", s.architecture));
    if !req.inputs.packages.is_empty() {
        cmd.arg(format!("--include={}", req.inputs.packages.join(",")));
    }
    for p in &s.dpkg_path_exclude {
        cmd.arg(format!("--dpkgopt=path-exclude={p}"));
    }
    for p in &s.dpkg_path_include {
        cmd.arg(format!("--dpkgopt=path-include={p}"));
    }
    if let Some(hook) = early_hook(req.build, tmp)? {
        cmd.arg(format!("--essential-hook=sh '{}' \"$1\"", hook.display()));
    }
    if !req.inputs.pins.is_empty() {
        let pins = pin_file(&req.inputs.pins, tmp)?;
        // In place while apt chooses versions, gone before the tree is packed.
        cmd.arg(format!(
            "--setup-hook=mkdir -p \"$1/etc/apt/preferences.d\" && cp '{}' \"$1/{PIN_FILE}\"",
            pins.display()
        ));
        cmd.arg(format!("--customize-hook=rm -f \"$1/{PIN_FILE}\""));
    }
    cmd.arg(&s.suite).arg(root).args(req.sources);
    Ok(cmd)
}

/// Where a rebuild's version pins live during mmdebstrap (removed after).
const PIN_FILE: &str = "etc/apt/preferences.d/zz-hardroot-pins";

/// apt preferences holding every package at its recorded version. A pin
/// above 1000 wins over any newer version; the package list given to
/// mmdebstrap stays the build's own, so apt marks the same packages
/// automatically installed as the original build did.
fn pin_file(pins: &[String], tmp: &Path) -> Result<PathBuf> {
    let mut text = String::new();
    for pin in pins {
        let Some((name, version)) = pin.split_once('=') else {
            continue;
        };
        text.push_str(&format!(
            "Package: {name}\nPin: version {version}\nPin-Priority: 1001\n\n"
        ));
    }
    let path = tmp.join("pins.pref");
    std::fs::write(&path, text).map_err(io_err("writing", &path))?;
    Ok(path)
}

/// A rebuild must install exactly the recorded versions: when the mirror
/// no longer serves one, apt takes another, and that is said here, by
/// package, instead of building something else.
fn check_pins(pins: &[String], got: &[Package]) -> Result<()> {
    if pins.is_empty() {
        return Ok(());
    }
    let want: BTreeMap<&str, &str> = pins.iter().filter_map(|p| p.split_once('=')).collect();
    let have: BTreeMap<&str, &str> = got
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    let mut wrong = Vec::new();
    for (name, version) in &want {
        match have.get(name) {
            Some(v) if v == version => {}
            Some(v) => wrong.push(format!("{name} {version} (the mirror gave {v})")),
            None => wrong.push(format!("{name} {version} (not installed)")),
        }
    }
    for (name, v) in &have {
        if !want.contains_key(name) {
            wrong.push(format!("{name} {v} (not in the recorded image)"));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(ImageError::VersionsUnavailable { packages: wrong })
    }
}

/// A shell script that places the `early` files before packages are
/// configured (e.g. crowdsec's offline opt-out must exist before its postinst).
fn early_hook(build: &BuildDir, tmp: &Path) -> Result<Option<PathBuf>> {
    let early: Vec<_> = build
        .manifest
        .entries
        .iter()
        .filter(|e| e.early && e.kind == EntryKind::File)
        .collect();
    if early.is_empty() {
        return Ok(None);
    }
    let mut script = String::from("#!/bin/sh\nset -eu\n");
    for e in early {
        let src = build.overlay.join(&e.path);
        // Paths were checked to be plain (no quotes or whitespace) when loading the manifest.
        script.push_str(&format!(
            "install -D -m {} '{}' \"$1/{}\"\n",
            e.mode,
            src.display(),
            e.path
        ));
    }
    let path = tmp.join("early-hook.sh");
    std::fs::write(&path, script).map_err(io_err("writing", &path))?;
    Ok(Some(path))
}

/// Golden state: remove what `system.scrub` names, every log file, a dbus
/// machine-id copy; leave /etc/machine-id empty.
fn scrub(root: &Path, patterns: &[String]) -> Result<()> {
    for pattern in patterns {
        for path in fsutil::glob(root, pattern.trim_start_matches('/'))? {
            fsutil::remove_any(&path)?;
        }
    }
    fsutil::remove_files_under(&root.join("var/log"))?;
    let dbus = root.join("var/lib/dbus/machine-id");
    if std::fs::symlink_metadata(&dbus).is_ok_and(|m| m.is_file()) {
        std::fs::remove_file(&dbus).map_err(io_err("removing", &dbus))?;
    }
    let id = root.join("etc/machine-id");
    std::fs::write(&id, "").map_err(io_err("emptying", &id))?;
    Ok(())
}

fn copy_boot_files(root: &Path, dest: &Path) -> Result<String> {
    let boot = root.join("boot");
    let kernel = newest(&boot, "vmlinuz-")?;
    let version = kernel.trim_start_matches("vmlinuz-").to_string();
    let initrd = format!("initrd.img-{version}");
    for (from, to) in [
        (kernel.as_str(), "vmlinuz"),
        (initrd.as_str(), "initrd.img"),
    ] {
        let src = boot.join(from);
        if !src.is_file() {
            return Err(input_err(
                &src,
                "missing in the base",
                "the kernel package must pull in initramfs-tools",
            ));
        }
        std::fs::copy(&src, dest.join(to)).map_err(io_err("copying", &src))?;
    }
    Ok(version)
}

fn newest(boot: &Path, prefix: &str) -> Result<String> {
    let mut names: Vec<String> = std::fs::read_dir(boot)
        .map_err(io_err("reading", boot))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names.pop().ok_or_else(|| {
        input_err(
            boot,
            "no kernel in the base",
            "add a kernel package (e.g. linux-image-cloud-amd64) to the `system` module's packages",
        )
    })
}

fn pack_base(
    req: &Request,
    root: &Path,
    tmp: &Path,
    survey: fsutil::Survey,
    kernel: String,
) -> Result<BaseMeta> {
    let step = Step::start("pack_base", "packing the base into ext4", req.quiet);
    let sde = req.inputs.source_date_epoch;
    let size = pack::image_size(survey.used_bytes, req.build.system.image_free_mib);
    // A rebuild takes the seeds (and so the UUIDs) of the base it reproduces.
    let identity = req.inputs.identity();
    let spec = pack::Ext4Spec {
        size,
        uuid: pack::uuid_from(&format!("base-uuid:{identity}")),
        hash_seed: pack::uuid_from(&format!("base-hash-seed:{identity}")),
        label: req.build.system.root_label.clone(),
        sde,
    };
    let img = tmp.join("base.img");
    pack::make_ext4(root, &img, &spec, &survey.paths)?;
    step.done(&format!("{} MiB image", size >> 20));
    Ok(BaseMeta {
        key: identity,
        inputs: serde_json::to_value(req.inputs).unwrap_or_default(),
        packages: dpkg_packages(root)?,
        users: id_map(&root.join("etc/passwd"))?,
        groups: id_map(&root.join("etc/group"))?,
        paths: survey.paths,
        kernel,
        image_bytes: size,
        used_bytes: survey.used_bytes,
        source_date_epoch: sde,
    })
}

fn write_meta(dir: &Path, meta: &BaseMeta) -> Result<()> {
    let path = dir.join("meta.json");
    let text = serde_json::to_string_pretty(meta).unwrap_or_default();
    std::fs::write(&path, text).map_err(io_err("writing", &path))
}

/// Moves the finished temp folder into place; an older entry (--rebuild-base)
/// is moved aside first and deleted after.
pub(crate) fn publish(cache: &Cache, tmp: tempfile::TempDir, key: &str) -> Result<()> {
    let entry = cache.entry(key);
    let old = cache
        .base_dir()
        .join(format!("{}{key}", super::leftovers::prefix("old")));
    if entry.exists() {
        std::fs::rename(&entry, &old).map_err(io_err("moving aside", &entry))?;
    }
    let tmp_path = tmp.keep();
    std::fs::rename(&tmp_path, &entry).map_err(io_err("publishing", &entry))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io_err("removing", &old))?;
    }
    Ok(())
}

/// name → id from /etc/passwd or /etc/group.
fn id_map(path: &Path) -> Result<BTreeMap<String, u32>> {
    let text = std::fs::read_to_string(path).map_err(io_err("reading", path))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((f.first()?.to_string(), f.get(2)?.parse().ok()?))
        })
        .collect())
}

/// Installed packages and versions from the base's dpkg status, sorted by name.
fn dpkg_packages(root: &Path) -> Result<Vec<Package>> {
    let path = root.join("var/lib/dpkg/status");
    let text = std::fs::read_to_string(&path).map_err(io_err("reading", &path))?;
    let mut out: Vec<Package> = text.split("\n\n").filter_map(parse_stanza).collect();
    out.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    Ok(out)
}

fn parse_stanza(stanza: &str) -> Option<Package> {
    let field = |name: &str| {
        stanza.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(": "))
                .map(str::to_string)
        })
    };
    let status = field("Status")?;
    if !status.ends_with(" installed") {
        return None;
    }
    Some(Package {
        name: field("Package")?,
        version: field("Version")?,
        architecture: field("Architecture")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
        }
    }

    #[test]
    fn a_rebuild_that_got_other_versions_names_each_package() {
        let pins = vec!["a=1".to_string(), "b=2".to_string(), "c=3".to_string()];
        assert!(check_pins(&pins, &[pkg("a", "1"), pkg("b", "2"), pkg("c", "3")]).is_ok());
        assert!(
            check_pins(&[], &[pkg("x", "9")]).is_ok(),
            "an ordinary build is not checked"
        );
        let Err(ImageError::VersionsUnavailable { packages }) =
            check_pins(&pins, &[pkg("a", "1"), pkg("b", "2.1"), pkg("d", "4")])
        else {
            panic!("other versions must be refused");
        };
        assert_eq!(
            packages,
            [
                "b 2 (the mirror gave 2.1)",
                "c 3 (not installed)",
                "d 4 (not in the recorded image)"
            ]
        );
    }

    #[test]
    fn pins_become_apt_preferences_above_1000() {
        let tmp = tempfile::tempdir().unwrap();
        let path = pin_file(&["libc6=2.36-9+deb12u4".to_string()], tmp.path()).unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(
            text,
            "Package: libc6\nPin: version 2.36-9+deb12u4\nPin-Priority: 1001\n\n"
        );
    }
}
