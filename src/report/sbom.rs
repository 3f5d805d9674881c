//! Section 1's bill of materials: the image's sbom.cdx.json summarised
//! (packages, licences by count, the largest packages) and the last
//! `hardroot verify` verdict (verify.json), both read from the image folder.
use super::inputs::Inputs;
use serde::Serialize;
use std::collections::BTreeMap;

/// What the report shows of an SBOM: read back from the file, not the types.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub packages: usize,
    pub files: usize,
    /// Licence name → packages under it, most common first.
    pub licences: Vec<(String, usize)>,
    /// Packages without a machine-readable licence.
    pub unlicensed: usize,
    /// (name, installed KiB), largest first, at most ten.
    pub largest: Vec<(String, u64)>,
}

/// Summarises a sbom.cdx.json written by hardroot.
pub fn summarize(doc: &serde_json::Value) -> Summary {
    let empty = Vec::new();
    let comps = doc
        .get("components")
        .and_then(|c| c.as_array())
        .unwrap_or(&empty);
    let is_pkg = |c: &&serde_json::Value| {
        c.get("purl")
            .and_then(|p| p.as_str())
            .is_some_and(|p| p.starts_with("pkg:deb/"))
    };
    let pkgs: Vec<&serde_json::Value> = comps.iter().filter(is_pkg).collect();
    let mut by_licence: BTreeMap<String, usize> = BTreeMap::new();
    let mut unlicensed = 0;
    let mut sizes = Vec::new();
    for p in &pkgs {
        let names = licence_names(p);
        unlicensed += usize::from(names.is_empty());
        for n in names {
            *by_licence.entry(n).or_default() += 1;
        }
        let name = p.get("name").and_then(|n| n.as_str()).unwrap_or("?");
        sizes.push((
            name.to_string(),
            property(p, "hardroot:installed-size-kib")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        ));
    }
    let mut licences: Vec<(String, usize)> = by_licence.into_iter().collect();
    licences.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    sizes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    sizes.truncate(10);
    Summary {
        packages: pkgs.len(),
        files: comps
            .iter()
            .filter(|c| property(c, "hardroot:module").is_some())
            .count(),
        licences,
        unlicensed,
        largest: sizes,
    }
}

fn licence_names(c: &serde_json::Value) -> Vec<String> {
    let empty = Vec::new();
    c.get("licenses")
        .and_then(|l| l.as_array())
        .unwrap_or(&empty)
        .iter()
        .filter_map(|l| {
            let lic = l.get("license")?;
            lic.get("name")
                .or_else(|| lic.get("id"))?
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

fn property(c: &serde_json::Value, name: &str) -> Option<String> {
    c.get("properties")?
        .as_array()?
        .iter()
        .find(|p| p.get("name").and_then(|n| n.as_str()) == Some(name))?
        .get("value")?
        .as_str()
        .map(str::to_string)
}

/// The section: None when the image folder has no SBOM (an older image).
#[derive(Serialize)]
pub struct Section {
    pub summary: Summary,
    /// "reproduced", "differs" or "" (never verified).
    pub verify: String,
    pub verify_detail: String,
}

pub fn collect(inputs: &Inputs) -> Option<Section> {
    let doc = inputs.build.sbom.as_ref()?;
    let (verify, verify_detail) = match &inputs.build.verify {
        Some(v) if v.get("reproduced") == Some(&serde_json::Value::Bool(true)) => (
            "reproduced".to_string(),
            format!(
                "{} rebuilt cold, byte for byte: sha256 {}",
                v.get("file").and_then(|f| f.as_str()).unwrap_or("?"),
                v.get("sha256").and_then(|f| f.as_str()).unwrap_or("?")
            ),
        ),
        Some(v) => (
            "differs".to_string(),
            v.get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("")
                .to_string(),
        ),
        None => (String::new(), String::new()),
    };
    Some(Section {
        summary: summarize(doc),
        verify,
        verify_detail,
    })
}
