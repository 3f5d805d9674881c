//! What the SBOM and the report know about Debian packages, read from files:
//! the image's dpkg status (name, version, architecture, size), the
//! machine-readable copyright files (DEP-5 `License:` short names), and apt's
//! package indexes (the .deb's sha256).
use super::error::{Result, io_err};
use super::tools;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One installed package, as dpkg's status file records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// `Installed-Size`, in KiB (0 when the stanza has none).
    pub installed_kib: u64,
}

/// (name, version, architecture): what identifies one .deb in a Debian archive.
pub type DebId = (String, String, String);

/// The fields of one deb822 stanza; continuation lines are folded into the
/// first line's value with "\n" (only the first line is read here).
fn fields(stanza: &str) -> BTreeMap<&str, &str> {
    stanza
        .lines()
        .filter(|l| !l.starts_with([' ', '\t']))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

/// Every stanza of a deb822 file (status, Packages, copyright).
fn stanzas(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n\n").filter(|s| !s.trim().is_empty())
}

/// Installed packages from ROOT/var/lib/dpkg/status, sorted by name and architecture.
pub fn installed(root: &Path) -> Result<Vec<Installed>> {
    let path = root.join("var/lib/dpkg/status");
    let text = std::fs::read_to_string(&path).map_err(io_err("reading", &path))?;
    Ok(parse_status(&text))
}

pub fn parse_status(text: &str) -> Vec<Installed> {
    let mut out: Vec<Installed> = stanzas(text)
        .filter_map(|s| {
            let f = fields(s);
            // "install ok installed": half-installed or removed packages are not in the image.
            if !f.get("Status")?.ends_with(" installed") {
                return None;
            }
            Some(Installed {
                name: f.get("Package")?.to_string(),
                version: f.get("Version")?.to_string(),
                architecture: f.get("Architecture")?.to_string(),
                installed_kib: f
                    .get("Installed-Size")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    out
}

/// The licence short names of a package's copyright file when it is in the
/// machine-readable format (DEP-5); empty when it is not, or is missing.
pub fn licences(root: &Path, package: &str) -> Vec<String> {
    let Some(text) = copyright_text(root, package) else {
        return Vec::new();
    };
    parse_dep5(&text)
}

/// ROOT/usr/share/doc/PKG/copyright, following a doc folder that is a link to
/// another package's (libfoo1 → libfoo-common) inside ROOT, never out of it.
fn copyright_text(root: &Path, package: &str) -> Option<String> {
    let docs = root.join("usr/share/doc");
    let mut dir = docs.join(package);
    if let Ok(target) = std::fs::read_link(&dir) {
        let t = target.to_string_lossy();
        dir = match t.strip_prefix('/') {
            Some(abs) => root.join(abs),
            None => docs.join(&*t),
        };
    }
    if !dir.starts_with(root) || dir.components().any(|c| c.as_os_str() == "..") {
        return None;
    }
    std::fs::read_to_string(dir.join("copyright")).ok()
}

/// DEP-5: the first stanza has `Format:` naming the copyright-format spec;
/// every `License:` field's first line is a short name or an expression of
/// them ("GPL-2+ or Artistic"), split here into names, sorted and unique.
pub fn parse_dep5(text: &str) -> Vec<String> {
    let mut all = stanzas(text);
    let machine_readable = all
        .next()
        .and_then(|s| {
            fields(s)
                .get("Format")
                .map(|f| f.contains("copyright-format"))
        })
        .unwrap_or(false);
    if !machine_readable {
        return Vec::new();
    }
    let mut names = BTreeSet::new();
    for stanza in stanzas(text) {
        if let Some(expr) = fields(stanza).get("License") {
            names.extend(split_expression(expr));
        }
    }
    names.into_iter().collect()
}

/// "GPL-2+ or Artistic-1.0, and BSD-3-clause" → the names; "with … exception" stays attached.
fn split_expression(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for word in expr.split_whitespace() {
        if word.eq_ignore_ascii_case("or") || word.eq_ignore_ascii_case("and") {
            names.push(current.join(" "));
            current.clear();
        } else {
            current.push(word);
        }
    }
    names.push(current.join(" "));
    names
        .into_iter()
        .map(|n| {
            n.trim_matches(|c: char| c == ',' || c.is_whitespace())
                .to_string()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// sha256 of the wanted .debs from the host's apt indexes (the same archive
/// the base was bootstrapped from: hardroot reads the host's apt sources).
/// A Debian archive never serves two different files under one
/// (name, version, architecture), so an index that lists the version knows
/// its hash; versions no index lists are simply absent from the map.
pub fn deb_hashes(lists: &Path, wanted: &BTreeSet<DebId>) -> BTreeMap<DebId, String> {
    let mut found = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(lists) else {
        return found;
    };
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains("_Packages"))
        })
        .collect();
    files.sort();
    for file in files {
        if let Some(text) = read_index(&file) {
            collect_hashes(&text, wanted, &mut found);
        }
    }
    found
}

/// apt keeps its indexes compressed (lz4, gz, …); apt-helper reads any of them.
fn read_index(file: &Path) -> Option<String> {
    let out = tools::command("/usr/lib/apt/apt-helper")
        .arg("cat-file")
        .arg(file)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn collect_hashes(index: &str, wanted: &BTreeSet<DebId>, found: &mut BTreeMap<DebId, String>) {
    for stanza in stanzas(index) {
        let f = fields(stanza);
        let (Some(n), Some(v), Some(a), Some(h)) = (
            f.get("Package"),
            f.get("Version"),
            f.get("Architecture"),
            f.get("SHA256"),
        ) else {
            continue;
        };
        let id = (n.to_string(), v.to_string(), a.to_string());
        if wanted.contains(&id) {
            found.insert(id, h.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_keeps_only_installed_packages_with_their_size() {
        let text = "Package: b\nStatus: install ok installed\nInstalled-Size: 12\nArchitecture: amd64\nVersion: 1:2.0-1\nDescription: x\n more\n\n\
                    Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1\n\n\
                    Package: a\nStatus: install ok installed\nArchitecture: all\nVersion: 3\n";
        let got = parse_status(text);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "a");
        assert_eq!(got[0].installed_kib, 0);
        assert_eq!(
            (got[1].version.as_str(), got[1].installed_kib),
            ("1:2.0-1", 12)
        );
    }

    #[test]
    fn dep5_licences_are_split_and_unique_and_free_text_gives_none() {
        let dep5 = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: x\n\n\
                    Files: *\nCopyright: me\nLicense: GPL-2+ or Artistic\n\n\
                    Files: lib/*\nLicense: BSD-3-clause, and GPL-2+ with OpenSSL exception\n\n\
                    License: GPL-2+\n On Debian systems …\n";
        assert_eq!(
            parse_dep5(dep5),
            [
                "Artistic",
                "BSD-3-clause",
                "GPL-2+",
                "GPL-2+ with OpenSSL exception"
            ]
        );
        assert!(parse_dep5("This package was debianized by someone.\nLicense: GPL\n").is_empty());
    }

    #[test]
    fn doc_folder_links_are_followed_inside_the_root_only() {
        let tmp = tempfile::tempdir().unwrap();
        let docs = tmp.path().join("usr/share/doc");
        std::fs::create_dir_all(docs.join("libfoo-common")).unwrap();
        std::fs::write(
            docs.join("libfoo-common/copyright"),
            "Format: copyright-format/1.0\n\nFiles: *\nLicense: MIT\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("libfoo-common", docs.join("libfoo1")).unwrap();
        std::os::unix::fs::symlink("/usr/share/doc/libfoo-common", docs.join("libfoo2")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", docs.join("evil")).unwrap();
        assert_eq!(licences(tmp.path(), "libfoo1"), ["MIT"]);
        assert_eq!(licences(tmp.path(), "libfoo2"), ["MIT"]);
        assert!(licences(tmp.path(), "evil").is_empty());
        assert!(licences(tmp.path(), "absent").is_empty());
    }

    #[test]
    fn index_hashes_only_for_the_exact_version_and_architecture() {
        let index = "Package: a\nVersion: 1\nArchitecture: amd64\nSHA256: aa\n\n\
                     Package: a\nVersion: 2\nArchitecture: amd64\nSHA256: bb\n\n\
                     Package: c\nVersion: 1\nArchitecture: all\nSHA256: cc\n";
        let id = |n: &str, v: &str, a: &str| (n.to_string(), v.to_string(), a.to_string());
        let wanted = BTreeSet::from([id("a", "2", "amd64"), id("c", "1", "amd64")]);
        let mut found = BTreeMap::new();
        collect_hashes(index, &wanted, &mut found);
        assert_eq!(found.len(), 1);
        assert_eq!(found[&id("a", "2", "amd64")], "bb");
    }
}
