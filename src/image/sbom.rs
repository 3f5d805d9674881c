//! OUT/sbom.cdx.json: a CycloneDX 1.5 bill of materials of the image as built.
//!
//! Components: every Debian package of the image's dpkg database (purl,
//! DEP-5 licences, the .deb's sha256 where apt's indexes know it), the
//! kernel, and every file of the overlay with the module that made it. The
//! top-level component is the shipped image with its sha256.
//!
//! Reproducible: the timestamp is SOURCE_DATE_EPOCH, the serial number a UUID
//! derived from the rest of the document, every list is sorted; the same
//! image gives the same bytes.
use super::dpkg::{self, DebId, Installed};
use super::error::{ImageError, Result, io_err};
use super::manifest::{BuildDir, EntryKind};
use cyclonedx_bom::external_models::normalized_string::NormalizedString;
use cyclonedx_bom::external_models::uri::Purl;
use cyclonedx_bom::models::bom::{Bom, SpecVersion, UrnUuid};
use cyclonedx_bom::models::component::{Classification, Component, Components};
use cyclonedx_bom::models::hash::{Hash, HashAlgorithm, HashValue, Hashes};
use cyclonedx_bom::models::license::{LicenseChoice, Licenses};
use cyclonedx_bom::models::metadata::Metadata;
use cyclonedx_bom::models::property::{Properties, Property};
use cyclonedx_bom::models::tool::Tools;
use cyclonedx_bom::prelude::DateTime;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::Path;

/// The Debian release the purls name (`distro=debian-12`), by suite.
fn distro(suite: &str) -> String {
    match suite {
        "bookworm" => "debian-12".into(),
        "trixie" => "debian-13".into(),
        "bullseye" => "debian-11".into(),
        other => format!("debian-{other}"),
    }
}

/// A file of the output folder: its name there and its sha256.
pub struct OutFile {
    pub name: String,
    pub sha256: String,
}

/// What the SBOM is made from.
pub struct Input<'a> {
    /// The image's tree (the cached base's rootfs/): dpkg status, copyright files.
    pub root: &'a Path,
    /// Where apt keeps its package indexes on this host (/var/lib/apt/lists).
    pub apt_lists: &'a Path,
    pub build: &'a BuildDir,
    /// The shipped image (disk.img, else rootfs.img).
    pub image: OutFile,
    pub kernel: OutFile,
    pub kernel_version: &'a str,
}

/// The document's bytes (pretty JSON, trailing newline).
pub fn document(input: &Input) -> Result<Vec<u8>> {
    let packages = dpkg::installed(input.root)?;
    let wanted: BTreeSet<DebId> = packages.iter().map(deb_id).collect();
    let hashes = dpkg::deb_hashes(input.apt_lists, &wanted);
    let mut components: Vec<Component> = Vec::new();
    let suite = &input.build.system.suite;
    for p in &packages {
        let licences = dpkg::licences(input.root, &p.name);
        components.push(package(p, suite, &licences, hashes.get(&deb_id(p)))?);
    }
    components.push(kernel(input));
    components.extend(overlay_files(input.build));
    let mut bom = Bom {
        serial_number: None,
        metadata: Some(metadata(input)?),
        components: Some(Components(components)),
        spec_version: SpecVersion::V1_5,
        // Bom::default() draws a random serial number: replaced below.
        ..Bom::default()
    };
    // The serial number is the hash of the document without it.
    let unserialled = to_json(bom.clone())?;
    let digest = super::cache::hex(&Sha256::digest(&unserialled));
    let uuid = super::pack::uuid_from(&format!("sbom:{digest}"));
    bom.serial_number =
        Some(UrnUuid::new(format!("urn:uuid:{uuid}")).map_err(|e| sbom_err(format!("{e:?}")))?);
    to_json(bom)
}

/// Writes the document to `dest` (the caller publishes it by rename).
pub fn write(input: &Input, dest: &Path) -> Result<()> {
    let bytes = document(input)?;
    std::fs::write(dest, bytes).map_err(io_err("writing", dest))
}

fn to_json(bom: Bom) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    bom.output_as_json_v1_5(&mut out)
        .map_err(|e| sbom_err(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

fn sbom_err(message: String) -> ImageError {
    ImageError::Sbom { message }
}

fn deb_id(p: &Installed) -> DebId {
    (p.name.clone(), p.version.clone(), p.architecture.clone())
}

/// `pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=debian-12`, encoded by the
/// purl crate (a version's ':' and '+' are legal there and stay as they are).
pub fn purl(name: &str, version: &str, arch: &str, suite: &str) -> Result<String> {
    let built = purl::GenericPurlBuilder::new(String::from("deb"), name)
        .with_namespace("debian")
        .with_version(version)
        .with_qualifier("arch", arch)
        .and_then(|b| b.with_qualifier("distro", distro(suite)))
        .map_err(|e| sbom_err(format!("purl of {name}: {e}")))?
        .build()
        .map_err(|e| sbom_err(format!("purl of {name}: {e}")))?;
    Ok(built.to_string())
}

fn package(
    p: &Installed,
    suite: &str,
    licences: &[String],
    deb_sha256: Option<&String>,
) -> Result<Component> {
    let purl = purl(&p.name, &p.version, &p.architecture, suite)?;
    let mut c = Component::new(
        Classification::Library,
        &p.name,
        &p.version,
        Some(purl.clone()),
    );
    c.purl = purl.parse::<Purl>().ok();
    if !licences.is_empty() {
        c.licenses = Some(Licenses(
            licences.iter().map(|l| LicenseChoice::license(l)).collect(),
        ));
    }
    c.hashes = deb_sha256.map(|h| sha256(h));
    c.properties = Some(Properties(vec![
        Property::new("hardroot:architecture", &p.architecture),
        Property::new("hardroot:installed-size-kib", &p.installed_kib.to_string()),
    ]));
    Ok(c)
}

fn kernel(input: &Input) -> Component {
    let mut c = Component::new(
        Classification::File,
        &input.kernel.name,
        input.kernel_version,
        Some(format!("hardroot:kernel:{}", input.kernel.name)),
    );
    c.description = Some(NormalizedString::new(
        "the Linux kernel the image boots (from the base's /boot)",
    ));
    c.hashes = Some(sha256(&input.kernel.sha256));
    c
}

/// Every regular file of the overlay, by path, with the module that made it.
fn overlay_files(build: &BuildDir) -> Vec<Component> {
    let mut files: Vec<_> = build
        .manifest
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
        .into_iter()
        .map(|e| {
            let path = format!("/{}", e.path);
            let mut c = Component::new(
                Classification::File,
                &path,
                "",
                Some(format!("hardroot:file:{path}")),
            );
            c.version = None;
            c.hashes = e.sha256.as_deref().map(sha256);
            c.properties = Some(Properties(vec![
                Property::new("hardroot:module", e.module.as_deref().unwrap_or("")),
                Property::new("hardroot:mode", &e.mode),
            ]));
            c
        })
        .collect()
}

fn metadata(input: &Input) -> Result<Metadata> {
    let m = &input.build.manifest;
    let stamp = time::OffsetDateTime::from_unix_timestamp(m.source_date_epoch)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .ok_or_else(|| {
            sbom_err(format!(
                "SOURCE_DATE_EPOCH {} is out of range",
                m.source_date_epoch
            ))
        })?;
    let timestamp = DateTime::try_from(stamp).map_err(|e| sbom_err(e.to_string()))?;
    let mut image = Component::new(
        Classification::OperatingSystem,
        &m.profile,
        "",
        Some(format!("hardroot:image:{}", input.image.name)),
    );
    image.version = None;
    image.description = Some(NormalizedString::new(&format!(
        "{} built by hardroot from profile {} on Debian {}",
        input.image.name, m.profile, input.build.system.suite
    )));
    image.hashes = Some(sha256(&input.image.sha256));
    image.properties = Some(Properties(vec![
        Property::new("hardroot:file", &input.image.name),
        Property::new("hardroot:overlay-root-hash", &m.root_hash),
        Property::new(
            "hardroot:source-date-epoch",
            &m.source_date_epoch.to_string(),
        ),
    ]));
    let tool = Component::new(
        Classification::Application,
        "hardroot",
        env!("CARGO_PKG_VERSION"),
        None,
    );
    Ok(Metadata {
        timestamp: Some(timestamp),
        tools: Some(Tools::Object {
            services: None,
            components: Some(Components(vec![tool])),
        }),
        component: Some(image),
        ..Metadata::default()
    })
}

fn sha256(hex: &str) -> Hashes {
    Hashes(vec![Hash {
        alg: HashAlgorithm::SHA_256,
        content: HashValue(hex.to_string()),
    }])
}
