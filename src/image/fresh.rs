//! Is a cached base still what the archive serves? (issue 31)
//!
//! A base is keyed by what the build asks for (suite, packages, sources
//! files, ...), not by what the archive serves, so without this check a
//! cached base would keep its packages for ever and a security update
//! published after it was made would never reach an image. Before a cached
//! base is used, apt on the host reads the sources' current indexes (into a
//! folder of the cache, so that an unchanged archive costs one "Hit" per
//! index) and simulates a dist-upgrade against the base's own dpkg status.
//! Anything it would install means the base is stale: it is bootstrapped
//! anew, which gives the bytes a cold build today would give, so that
//! `verify` and `--from-manifest` (pinned, never refreshed) keep working.
use super::cache::{Cache, hex};
use super::error::{Result, io_err};
use super::tools;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A package the archive serves in another version than the base has (or
/// that a fresh bootstrap would add: `from` empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upgrade {
    pub name: String,
    pub from: String,
    pub to: String,
}

pub enum Freshness {
    /// The archive serves exactly the base's versions.
    Current,
    /// These packages changed in the archive since the base was made.
    Stale(Vec<Upgrade>),
    /// The archive could not be asked (offline, mirror down): why.
    Unknown(String),
}

/// What the base at `rootfs` lacks of the archive `sources` serves today.
pub fn check(cache: &Cache, sources: &[PathBuf], architecture: &str, rootfs: &Path) -> Freshness {
    match ask_archive(cache, sources, architecture, rootfs) {
        Ok(up) if up.is_empty() => Freshness::Current,
        Ok(up) => Freshness::Stale(up),
        Err(e) => Freshness::Unknown(e.to_string()),
    }
}

fn ask_archive(
    cache: &Cache,
    sources: &[PathBuf],
    architecture: &str,
    rootfs: &Path,
) -> Result<Vec<Upgrade>> {
    let state = AptState::new(cache, sources, architecture)?;
    // One run at a time per set of sources: they share the lists.
    let _lock = cache.lock(&format!("apt-{}", state.id), true)?;
    state.write_sources()?;
    let status = rootfs.join("var/lib/dpkg/status");
    let mut update = state.apt_get(&status);
    tools::run(update.args(["-q", "update"]))?;
    let mut simulate = state.apt_get(&status);
    let plan = tools::run(simulate.args(["-q", "-s", "dist-upgrade"]))?;
    Ok(parse_simulation(&plan))
}

/// apt's view of one set of sources, kept in CACHE/apt/ID/ between runs.
struct AptState {
    id: String,
    dir: PathBuf,
    architecture: String,
    /// The sources files' paths and bytes, as mmdebstrap gets them.
    sources: Vec<(PathBuf, Vec<u8>)>,
}

impl AptState {
    fn new(cache: &Cache, sources: &[PathBuf], architecture: &str) -> Result<AptState> {
        let mut h = Sha256::new();
        h.update(architecture.as_bytes());
        let mut texts = Vec::new();
        for s in sources {
            let text = std::fs::read(s).map_err(io_err("reading", s))?;
            h.update(s.to_string_lossy().as_bytes());
            h.update(&text);
            texts.push((s.clone(), text));
        }
        let id = hex(&h.finalize())[..16].to_string();
        Ok(AptState {
            dir: cache.apt_dir().join(&id),
            id,
            architecture: architecture.to_string(),
            sources: texts,
        })
    }

    /// apt's folders, and the sources under names it reads (*.list, *.sources).
    fn write_sources(&self) -> Result<()> {
        let parts = self.dir.join("sources.list.d");
        for sub in [
            "state/lists/partial",
            "cache/archives/partial",
            "preferences.d",
        ] {
            let p = self.dir.join(sub);
            std::fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
        }
        let _ = std::fs::remove_dir_all(&parts);
        std::fs::create_dir_all(&parts).map_err(io_err("creating", &parts))?;
        for (i, (path, text)) in self.sources.iter().enumerate() {
            let ext = if path.extension().is_some_and(|e| e == "sources") {
                "sources"
            } else {
                "list"
            };
            let copy = parts.join(format!("{i:02}.{ext}"));
            std::fs::write(&copy, text).map_err(io_err("writing", &copy))?;
        }
        let empty = self.dir.join("sources.list");
        std::fs::write(&empty, "").map_err(io_err("writing", &empty))
    }

    /// apt-get reading only this state and `status`: not the host's lists,
    /// pins or dpkg database (the host's apt.conf.d, e.g. a proxy, still applies).
    fn apt_get(&self, status: &Path) -> std::process::Command {
        let d = |sub: &str| self.dir.join(sub).display().to_string();
        let mut cmd = tools::command("apt-get");
        for (name, value) in [
            ("Dir::Etc::SourceList", d("sources.list")),
            ("Dir::Etc::SourceParts", d("sources.list.d")),
            ("Dir::Etc::Preferences", d("preferences")),
            ("Dir::Etc::PreferencesParts", d("preferences.d")),
            ("Dir::State", d("state")),
            ("Dir::State::status", status.display().to_string()),
            ("Dir::Cache", d("cache")),
            ("Debug::NoLocking", "true".to_string()),
            ("APT::Architecture", self.architecture.clone()),
            ("APT::Architectures", self.architecture.clone()),
            ("APT::Get::List-Cleanup", "true".to_string()),
        ] {
            cmd.arg("-o").arg(format!("{name}={value}"));
        }
        cmd
    }
}

/// The "Inst" lines of `apt-get -s`: `Inst NAME [OLD] (NEW ARCHIVE [ARCH])`,
/// without `[OLD]` for a package the base lacks.
fn parse_simulation(text: &str) -> Vec<Upgrade> {
    let mut out: Vec<Upgrade> = text
        .lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .filter_map(|rest| {
            let (name, rest) = rest.split_once(' ')?;
            let (from, rest) = match rest.strip_prefix('[') {
                Some(r) => {
                    let (old, r) = r.split_once("] ")?;
                    (old.to_string(), r)
                }
                None => (String::new(), rest),
            };
            let to = rest.strip_prefix('(')?.split(' ').next()?.to_string();
            Some(Upgrade {
                name: name.to_string(),
                from,
                to,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// "3 packages upgraded: openssl 3.0.11-1~deb12u2 → 3.0.15-1~deb12u1, ..."
pub fn describe(up: &[Upgrade]) -> String {
    let list: Vec<String> = up
        .iter()
        .map(|u| {
            if u.from.is_empty() {
                format!("{} {} (new)", u.name, u.to)
            } else {
                format!("{} {} → {}", u.name, u.from, u.to)
            }
        })
        .collect();
    let n = up.len();
    format!(
        "{n} package{} upgraded: {}",
        if n == 1 { "" } else { "s" },
        list.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_upgrades_and_new_packages_from_a_simulation() {
        let text = "Reading package lists...\n\
            Inst libssl3 [3.0.11-1~deb12u2] (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64])\n\
            Inst openssl [3.0.11-1~deb12u2] (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64])\n\
            Inst libnew1 (1.2-3 Debian:12.8/stable [amd64])\n\
            Conf libssl3 (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64])\n";
        let up = parse_simulation(text);
        assert_eq!(up.len(), 3);
        assert_eq!(
            up[2],
            Upgrade {
                name: "openssl".into(),
                from: "3.0.11-1~deb12u2".into(),
                to: "3.0.15-1~deb12u1".into()
            }
        );
        assert_eq!(up[0].name, "libnew1", "sorted by name: {up:?}");
        assert_eq!(up[0].from, "", "a package the base lacks: {up:?}");
        assert_eq!(
            describe(&up[2..]),
            "1 package upgraded: openssl 3.0.11-1~deb12u2 → 3.0.15-1~deb12u1"
        );
    }

    #[test]
    fn an_up_to_date_base_has_nothing_to_install() {
        let text = "Reading package lists...\nBuilding dependency tree...\nCalculating upgrade...\n0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n";
        assert!(parse_simulation(text).is_empty());
    }
}
