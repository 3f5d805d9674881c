//! Section 6: what changed since the previous image (`--against OTHER_OUT`):
//! overlay files by manifest entry, packages by name and version.
use super::identity::{self, Package, text};
use super::inputs::Build;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Serialize)]
pub struct Diff {
    pub other_dir: String,
    pub root_hash: (String, String),
    pub image_sha256: (String, String),
    pub files_added: Vec<String>,
    pub files_removed: Vec<String>,
    pub files_changed: Vec<Changed>,
    pub packages_added: Vec<String>,
    pub packages_removed: Vec<String>,
    pub packages_changed: Vec<Changed>,
}

#[derive(Serialize)]
pub struct Changed {
    pub name: String,
    pub what: String,
}

pub fn collect(old: &Build, new: &Build) -> Diff {
    let (files_added, files_removed, files_changed) = files(old, new);
    let (packages_added, packages_removed, packages_changed) = packages(old, new);
    Diff {
        other_dir: old
            .dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        root_hash: (root_hash(old), root_hash(new)),
        image_sha256: (image_sha(old), image_sha(new)),
        files_added,
        files_removed,
        files_changed,
        packages_added,
        packages_removed,
        packages_changed,
    }
}

fn root_hash(b: &Build) -> String {
    b.manifest
        .as_ref()
        .and_then(|m| m.get("root_hash"))
        .map(text)
        .unwrap_or_else(identity::dash)
}

fn image_sha(b: &Build) -> String {
    b.image_manifest
        .as_ref()
        .and_then(|m| m.pointer("/rootfs/sha256"))
        .map(text)
        .unwrap_or_else(identity::dash)
}

/// Entry fields that make a file different in the image.
const ENTRY_FIELDS: &[&str] = &["type", "mode", "owner", "group", "sha256", "target"];

fn entries(b: &Build) -> BTreeMap<String, &Value> {
    b.manifest
        .as_ref()
        .and_then(|m| m.get("entries"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|e| Some((e.get("path")?.as_str()?.to_string(), e)))
                .collect()
        })
        .unwrap_or_default()
}

type Split = (Vec<String>, Vec<String>, Vec<Changed>);

fn files(old: &Build, new: &Build) -> Split {
    let (a, b) = (entries(old), entries(new));
    let added = b
        .keys()
        .filter(|k| !a.contains_key(*k))
        .map(|k| format!("/{k}"))
        .collect();
    let removed = a
        .keys()
        .filter(|k| !b.contains_key(*k))
        .map(|k| format!("/{k}"))
        .collect();
    let changed = a
        .iter()
        .filter_map(|(path, ea)| {
            let eb = b.get(path)?;
            let fields: Vec<&str> = ENTRY_FIELDS
                .iter()
                .filter(|f| ea.get(**f) != eb.get(**f))
                .copied()
                .map(|f| if f == "sha256" { "content" } else { f })
                .collect();
            (!fields.is_empty()).then(|| Changed {
                name: format!("/{path}"),
                what: fields.join(", "),
            })
        })
        .collect();
    (added, removed, changed)
}

fn packages(old: &Build, new: &Build) -> Split {
    let index = |b: &Build| -> BTreeMap<String, Package> {
        identity::packages(b)
            .0
            .into_iter()
            .map(|p| (p.name.clone(), p))
            .collect()
    };
    let (a, b) = (index(old), index(new));
    let added = b
        .values()
        .filter(|p| !a.contains_key(&p.name))
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    let removed = a
        .values()
        .filter(|p| !b.contains_key(&p.name))
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    let changed = a
        .values()
        .filter_map(|pa| {
            let pb = b.get(&pa.name)?;
            (pa.version != pb.version).then(|| Changed {
                name: pa.name.clone(),
                what: format!("{} → {}", pa.version, pb.version),
            })
        })
        .collect();
    (added, removed, changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn build(entries: Value, packages: Value) -> Build {
        Build {
            dir: None,
            manifest: Some(json!({"root_hash": "r", "entries": entries, "packages": []})),
            config: None,
            image_manifest: Some(json!({"packages": packages})),
            sbom: None,
            verify: None,
        }
    }

    #[test]
    fn files_and_packages_added_removed_changed() {
        let old = build(
            json!([{"path": "etc/a", "type": "file", "sha256": "1"}, {"path": "etc/b", "type": "file", "sha256": "2"}]),
            json!([{"name": "openssl", "version": "3.0.11"}, {"name": "gone", "version": "1"}]),
        );
        let new = build(
            json!([{"path": "etc/a", "type": "file", "sha256": "9"}, {"path": "etc/c", "type": "file", "sha256": "3"}]),
            json!([{"name": "openssl", "version": "3.0.13"}, {"name": "new", "version": "2"}]),
        );
        let d = collect(&old, &new);
        assert_eq!(d.files_added, ["/etc/c"]);
        assert_eq!(d.files_removed, ["/etc/b"]);
        assert_eq!(d.files_changed[0].name, "/etc/a");
        assert_eq!(d.files_changed[0].what, "content");
        assert_eq!(d.packages_added, ["new 2"]);
        assert_eq!(d.packages_removed, ["gone 1"]);
        assert_eq!(d.packages_changed[0].what, "3.0.11 → 3.0.13");
    }
}
