//! Section 1: which image this is — profile, hashes, packages, times, versions.
use super::inputs::{Build, Inputs};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;

#[derive(Serialize)]
pub struct Identity {
    pub profile: String,
    pub root_hash: String,
    pub image_sha256: String,
    pub kernel: String,
    pub packages: Vec<Package>,
    /// Where the package list came from: versions only exist in image-manifest.json.
    pub packages_source: String,
    pub declared_packages: usize,
    pub source_date_epoch: String,
    pub image_built: String,
    pub test: String,
    pub description: String,
    pub accel: String,
    pub tested_at: String,
    pub hardroot_version: String,
    pub build_dir: String,
}

#[derive(Serialize, Clone, PartialEq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
}

pub fn collect(inputs: &Inputs) -> Identity {
    let b = &inputs.build;
    let m = b.manifest.as_ref();
    let im = b.image_manifest.as_ref();
    let r = &inputs.results;
    let (packages, packages_source) = packages(b);
    Identity {
        profile: first_str(&[m, im], "profile"),
        root_hash: first_str(&[m], "root_hash").or_dash(|| first_str(&[im], "overlay_root_hash")),
        image_sha256: im
            .and_then(|v| v.pointer("/rootfs/sha256"))
            .map(text)
            .unwrap_or_else(dash),
        kernel: im
            .and_then(|v| v.pointer("/kernel/version"))
            .map(text)
            .unwrap_or_else(dash),
        declared_packages: m
            .and_then(|v| v.get("packages"))
            .and_then(Value::as_array)
            .map_or(0, Vec::len),
        packages,
        packages_source,
        source_date_epoch: [m, im]
            .into_iter()
            .flatten()
            .find_map(|v| v.get("source_date_epoch")?.as_i64())
            .map(utc)
            .unwrap_or_else(dash),
        image_built: b
            .dir
            .as_ref()
            .and_then(|d| mtime(&d.join("image-manifest.json")))
            .unwrap_or_else(dash),
        test: r.get("test").map(text).unwrap_or_else(dash),
        description: r.get("description").map(text).unwrap_or_default(),
        accel: r.get("accel").map(text).unwrap_or_else(dash),
        tested_at: mtime(&inputs.run.join("results.json")).unwrap_or_else(dash),
        hardroot_version: env!("CARGO_PKG_VERSION").to_string(),
        build_dir: b
            .dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| {
                "not found (no manifest.json in RUN/build or RUN; pass --image DIR)".into()
            }),
    }
}

/// The installed packages with versions (image-manifest.json), else the
/// profile's declared package names (manifest.json).
pub fn packages(b: &Build) -> (Vec<Package>, String) {
    let listed = b
        .image_manifest
        .as_ref()
        .and_then(|v| v.get("packages"))
        .and_then(Value::as_array);
    if let Some(list) = listed {
        let pkgs = list
            .iter()
            .map(|p| Package {
                name: p.get("name").map(text).unwrap_or_default(),
                version: p.get("version").map(text).unwrap_or_default(),
                arch: p.get("architecture").map(text).unwrap_or_default(),
            })
            .collect();
        return (pkgs, "installed in the image (image-manifest.json)".into());
    }
    let names = b
        .manifest
        .as_ref()
        .and_then(|v| v.get("packages"))
        .and_then(Value::as_array);
    match names {
        Some(list) => (
            list.iter()
                .map(|n| Package {
                    name: text(n),
                    version: "?".into(),
                    arch: String::new(),
                })
                .collect(),
            "declared by the modules (manifest.json; no image-manifest.json, so no versions)"
                .into(),
        ),
        None => (Vec::new(), "no manifest.json or image-manifest.json".into()),
    }
}

trait OrDash {
    fn or_dash(self, f: impl FnOnce() -> String) -> String;
}

impl OrDash for String {
    fn or_dash(self, f: impl FnOnce() -> String) -> String {
        if self == "—" { f() } else { self }
    }
}

fn first_str(docs: &[Option<&Value>], key: &str) -> String {
    docs.iter()
        .flatten()
        .find_map(|v| v.get(key).map(text))
        .unwrap_or_else(dash)
}

pub fn dash() -> String {
    "—".into()
}

/// A JSON value as plain text: strings without quotes, others as JSON.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => dash(),
        other => other.to_string(),
    }
}

fn mtime(path: &Path) -> Option<String> {
    let t = std::fs::metadata(path).ok()?.modified().ok()?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some(utc(i64::try_from(secs).ok()?))
}

/// Seconds since the epoch as "YYYY-MM-DD HH:MM:SS UTC" (civil-from-days, no
/// time-zone data needed).
pub fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_704_067_200), "2024-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400 + 3661), "2000-02-29 01:01:01 UTC");
    }
}
