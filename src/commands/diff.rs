//! `hardroot diff OUT_A OUT_B`: what changed between two builds, by manifest,
//! with unified diffs of text files.
use super::args::DiffArgs;
use crate::emit::{Manifest, ManifestEntry};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

pub fn diff(a: &DiffArgs) -> miette::Result<()> {
    let ma = read_manifest(&a.a)?;
    let mb = read_manifest(&a.b)?;
    let ea: BTreeMap<&str, &ManifestEntry> =
        ma.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let eb: BTreeMap<&str, &ManifestEntry> =
        mb.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let added: Vec<&str> = eb
        .keys()
        .filter(|p| !ea.contains_key(*p))
        .copied()
        .collect();
    let removed: Vec<&str> = ea
        .keys()
        .filter(|p| !eb.contains_key(*p))
        .copied()
        .collect();
    let changed: Vec<&str> = ea
        .iter()
        .filter(|(p, e)| eb.get(*p).is_some_and(|b| !same(e, b)))
        .map(|(p, _)| *p)
        .collect();
    let pkg_added: Vec<&String> = mb
        .packages
        .iter()
        .filter(|p| !ma.packages.contains(p))
        .collect();
    let pkg_removed: Vec<&String> = ma
        .packages
        .iter()
        .filter(|p| !mb.packages.contains(p))
        .collect();
    if a.json {
        let v = json!({
            "root_hash": { "a": ma.root_hash, "b": mb.root_hash },
            "added": added, "removed": removed,
            "changed": changed.iter().map(|p| json!({ "path": p, "diff": text_diff(a, p) })).collect::<Vec<_>>(),
            "packages": { "added": pkg_added, "removed": pkg_removed },
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    if ma.root_hash == mb.root_hash {
        println!("identical overlays (root hash {})", ma.root_hash);
        return Ok(());
    }
    for p in &added {
        println!("added    /{p}");
    }
    for p in &removed {
        println!("removed  /{p}");
    }
    for p in &changed {
        println!("changed  /{p}");
        if let Some(d) = text_diff(a, p) {
            print!("{d}");
        }
    }
    for p in pkg_added {
        println!("package added    {p}");
    }
    for p in pkg_removed {
        println!("package removed  {p}");
    }
    Ok(())
}

fn read_manifest(out: &Path) -> miette::Result<Manifest> {
    let path = out.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        miette::miette!(
            "cannot read {}: {e} (is {} a build output?)",
            path.display(),
            out.display()
        )
    })?;
    serde_json::from_str(&text)
        .map_err(|e| miette::miette!("{} is not a hardroot manifest: {e}", path.display()))
}

fn same(a: &ManifestEntry, b: &ManifestEntry) -> bool {
    (&a.kind, &a.mode, &a.owner, &a.group, &a.sha256, &a.target)
        == (&b.kind, &b.mode, &b.owner, &b.group, &b.sha256, &b.target)
}

/// A unified diff when both sides are text files in the overlay folders.
fn text_diff(a: &DiffArgs, path: &str) -> Option<String> {
    let old = std::fs::read(a.a.join("overlay").join(path)).ok()?;
    let new = std::fs::read(a.b.join("overlay").join(path)).ok()?;
    let (old, new) = (String::from_utf8(old).ok()?, String::from_utf8(new).ok()?);
    let d = similar::TextDiff::from_lines(&old, &new);
    Some(
        d.unified_diff()
            .context_radius(2)
            .header(&format!("a/{path}"), &format!("b/{path}"))
            .to_string(),
    )
}
