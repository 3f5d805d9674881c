//! manifest.json: every entry of the overlay with its hash and where it came from.
use crate::render::{Entry, Kind, Rendered, Units};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub profile: String,
    pub source_date_epoch: i64,
    pub root_hash: String,
    pub packages: Vec<String>,
    pub units: Units,
    /// Paths the image stage deletes from the base before applying the overlay.
    #[serde(default)]
    pub remove: Vec<String>,
    pub entries: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestEntry {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub mode: String,
    pub owner: String,
    pub group: String,
    /// Numeric ids when known at build time (root or a number); names are resolved in the image.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
    #[serde(default)]
    pub early: bool,
    /// A parent folder no module declared: the image keeps the base's folder as it is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub implied: bool,
    pub module: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub template: Option<String>,
}

impl Manifest {
    pub fn new(rendered: &Rendered, profile: &str, epoch: i64) -> Manifest {
        let entries: Vec<ManifestEntry> = rendered.entries.values().map(entry).collect();
        Manifest {
            format: FORMAT,
            profile: profile.to_string(),
            source_date_epoch: epoch,
            root_hash: root_hash(&entries),
            packages: rendered.packages.clone(),
            units: rendered.units.clone(),
            remove: rendered.remove.clone(),
            entries,
        }
    }

    pub fn entry(&self, path: &str) -> Option<&ManifestEntry> {
        let path = path.trim_start_matches('/');
        self.entries.iter().find(|e| e.path == path)
    }
}

pub fn numeric_id(name: &str) -> Option<u32> {
    if name == "root" {
        Some(0)
    } else {
        name.parse().ok()
    }
}

fn entry(e: &Entry) -> ManifestEntry {
    let (kind, size, sha256, target) = match &e.kind {
        Kind::File(bytes) => (
            "file",
            Some(bytes.len() as u64),
            Some(hex(&Sha256::digest(bytes))),
            None,
        ),
        Kind::Dir => ("dir", None, None, None),
        Kind::Symlink(t) => ("symlink", None, None, Some(t.clone())),
    };
    ManifestEntry {
        path: e.path.clone(),
        kind: kind.to_string(),
        mode: format!("{:04o}", e.mode),
        owner: e.owner.clone(),
        group: e.group.clone(),
        uid: numeric_id(&e.owner),
        gid: numeric_id(&e.group),
        size,
        sha256,
        target,
        early: e.early,
        implied: e.module.is_empty(),
        module: e.module.clone(),
        template: e.template.clone(),
    }
}

/// The overlay's identity: a hash over every entry's path, type, mode, owner and
/// content (provenance excluded, so moving a file between modules keeps the hash).
pub fn root_hash(entries: &[ManifestEntry]) -> String {
    let mut h = Sha256::new();
    for e in entries {
        let what = e.sha256.as_deref().or(e.target.as_deref()).unwrap_or("-");
        h.update(format!(
            "{} {} {}:{} {} {}\n",
            e.kind, e.mode, e.owner, e.group, e.path, what
        ));
    }
    hex(&h.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
