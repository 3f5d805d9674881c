//! What an image folder becomes in a registry: which files, their media
//! types, and the manifest's annotations.
use super::error::{OciError, Result, io_err};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const ARTIFACT_TYPE: &str = "application/vnd.hardroot.image.v1";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The OCI 1.1 empty config: `{}`.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_CONFIG: &[u8] = b"{}";
pub const TITLE: &str = "org.opencontainers.image.title";
pub const PROFILE: &str = "dev.hardroot.profile";
pub const ROOT_HASH: &str = "dev.hardroot.overlay-root-hash";
pub const SOURCE_DATE_EPOCH: &str = "dev.hardroot.source-date-epoch";
pub const CREATED: &str = "org.opencontainers.image.created";

/// A cached Debian base shared between builders (`image --cache-to`), tagged
/// with its base key in the repository `--cache-to` names.
pub const BASE_ARTIFACT_TYPE: &str = "application/vnd.hardroot.base.v1";
pub const BASE_KEY: &str = "dev.hardroot.base-key";
/// The package set asked for, space-separated (the key's input).
pub const BASE_PACKAGES: &str = "dev.hardroot.base-packages";
pub const BASE_KERNEL: &str = "dev.hardroot.base-kernel";

/// One file of the artifact.
#[derive(Debug, Clone)]
pub struct File {
    pub name: String,
    pub path: PathBuf,
    pub media_type: &'static str,
    /// What image-manifest.json records for it (None: a file it does not list).
    pub recorded_sha256: Option<String>,
}

/// The media type of a file of the artifact, by its name.
pub fn media_type(name: &str) -> &'static str {
    match name {
        "disk.img" | "rootfs.img" => "application/vnd.hardroot.disk.raw",
        "disk.qcow2" | "rootfs.qcow2" => "application/vnd.hardroot.disk.qcow2",
        "image-manifest.json" => "application/vnd.hardroot.image-manifest.v1+json",
        crate::image::shared::META => "application/vnd.hardroot.base.meta.v1+json",
        crate::image::shared::ARCHIVE => "application/vnd.hardroot.base.tree.v1.tar+zstd",
        "sbom.cdx.json" => "application/vnd.cyclonedx+json",
        "vmlinuz" => "application/vnd.hardroot.kernel",
        "initrd.img" => "application/vnd.hardroot.initrd",
        n if n.ends_with(".html") => "text/html",
        n if n.ends_with(".json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// A layer's title comes from the registry: only a plain file name may be written.
pub fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with(".hrtmp-")
        && !name.contains(['/', '\\', '\0'])
}

/// An image folder's image-manifest.json, read.
pub struct ImageManifest {
    pub path: PathBuf,
    pub doc: serde_json::Value,
}

impl ImageManifest {
    pub fn load(dir: &Path) -> Result<ImageManifest> {
        let path = dir.join("image-manifest.json");
        let text = std::fs::read_to_string(&path).map_err(io_err("reading", &path))?;
        let doc = serde_json::from_str(&text).map_err(|e| OciError::Input {
            path: path.clone(),
            message: format!("not an image manifest: {e}"),
            hint: "push a folder `hardroot image` wrote".into(),
        })?;
        Ok(ImageManifest { path, doc })
    }

    fn str_at(&self, pointer: &str) -> Option<String> {
        self.doc
            .pointer(pointer)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }

    /// The sha256 image-manifest.json records for a file of the image.
    pub fn recorded(&self, name: &str) -> Option<String> {
        match name {
            "disk.img" => self.str_at("/disk/sha256"),
            "disk.qcow2" => self.str_at("/disk/qcow2/sha256"),
            "rootfs.img" => self.str_at("/rootfs/sha256"),
            "vmlinuz" => self.str_at("/kernel/vmlinuz_sha256"),
            "initrd.img" => self.str_at("/kernel/initrd_sha256"),
            "sbom.cdx.json" => self.str_at("/sbom/sha256"),
            _ => None,
        }
    }

    /// The files that make the image: the disk (raw and qcow2) when it has
    /// one, else the root file system with its kernel and initrd.
    pub fn image_files(&self) -> Vec<&'static str> {
        if self.doc.get("disk").is_some_and(|d| !d.is_null()) {
            let mut v = vec!["disk.img"];
            if self.str_at("/disk/qcow2/sha256").is_some() {
                v.push("disk.qcow2");
            }
            v
        } else {
            vec!["rootfs.img", "vmlinuz", "initrd.img"]
        }
    }

    /// profile, overlay root hash and SOURCE_DATE_EPOCH, as manifest annotations.
    pub fn annotations(&self) -> Result<BTreeMap<String, String>> {
        let missing = |what: &str| OciError::Input {
            path: self.path.clone(),
            message: format!("has no {what}"),
            hint: "push a folder `hardroot image` wrote".into(),
        };
        let profile = self.str_at("/profile").ok_or_else(|| missing("profile"))?;
        let root = self
            .str_at("/overlay_root_hash")
            .ok_or_else(|| missing("overlay_root_hash"))?;
        let sde = self
            .doc
            .get("source_date_epoch")
            .and_then(|v| v.as_i64())
            .ok_or_else(|| missing("source_date_epoch"))?;
        let mut a = BTreeMap::new();
        a.insert(PROFILE.to_string(), profile);
        a.insert(ROOT_HASH.to_string(), root);
        dated(&mut a, sde);
        Ok(a)
    }
}

/// SOURCE_DATE_EPOCH, as itself and as the creation time (RFC 3339): the
/// same content pushed twice is the same manifest digest.
pub fn dated(a: &mut BTreeMap<String, String>, sde: i64) {
    a.insert(SOURCE_DATE_EPOCH.to_string(), sde.to_string());
    if let Ok(t) = time::OffsetDateTime::from_unix_timestamp(sde)
        && let Ok(s) = t.format(&time::format_description::well_known::Rfc3339)
    {
        a.insert(CREATED.to_string(), s);
    }
}

/// The files of DIR to push, in the artifact's order.
pub fn files(dir: &Path, report: Option<&Path>) -> Result<(ImageManifest, Vec<File>)> {
    let m = ImageManifest::load(dir)?;
    let mut names: Vec<&str> = m.image_files();
    names.push("image-manifest.json");
    if dir.join("sbom.cdx.json").is_file() {
        names.push("sbom.cdx.json");
    }
    let mut out: Vec<File> = names
        .into_iter()
        .map(|n| File {
            name: n.to_string(),
            path: dir.join(n),
            media_type: media_type(n),
            recorded_sha256: m.recorded(n),
        })
        .collect();
    if let Some(r) = report {
        let name = r
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| safe_name(n) && !out.iter().any(|f| &f.name == n))
            .ok_or_else(|| OciError::Input {
                path: r.to_path_buf(),
                message: "not a usable report file name".into(),
                hint: "name the report like report.html".into(),
            })?;
        out.push(File {
            media_type: media_type(&name),
            name,
            path: r.to_path_buf(),
            recorded_sha256: None,
        });
    }
    Ok((m, out))
}
