//! results.json in the test's output folder: every step and subtest with its
//! outcome and duration (a later HTML report reads it). Written after every
//! subtest and at the end, so a crash still leaves what happened so far.
use super::qemu::{BootMode, ImageDir};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Serialize, Default)]
pub struct Results {
    pub format: u32,
    pub test: String,
    pub description: String,
    pub accel: String,
    /// test.toml's `[parameters]` with the values this run used.
    pub parameters: Vec<super::spec::Parameter>,
    pub passed: Option<bool>,
    pub error: Option<String>,
    pub duration_s: f64,
    pub subtests: Vec<Subtest>,
    pub steps: Vec<Step>,
    pub machines: BTreeMap<String, MachineInfo>,
    #[serde(skip)]
    pub open: Vec<String>,
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct Subtest {
    pub name: String,
    pub passed: bool,
    pub duration_s: f64,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Step {
    pub subtest: Option<String>,
    pub target: String,
    pub action: String,
    pub detail: String,
    pub ok: bool,
    pub duration_s: f64,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, Default, Clone)]
pub struct MachineInfo {
    pub serial_log: Option<String>,
    /// Seconds from QEMU start to the backdoor's ready marker, one per boot.
    pub boot_to_ready_s: Vec<f64>,
    /// The guest kernel's uptime at the ready marker, per boot: what the
    /// firmware and bootloader took is boot_to_ready_s minus this.
    pub kernel_uptime_at_ready_s: Vec<f64>,
    /// What the machine booted, hashed by the driver before the first boot.
    pub boot: Option<BootInfo>,
}

/// The image file a machine booted and its sha256 as read by the driver
/// (not copied from a manifest): the report compares it with
/// image-manifest.json's disk.sha256.
#[derive(Debug, Serialize, Clone)]
pub struct BootInfo {
    pub mode: BootMode,
    pub file: String,
    pub sha256: String,
    /// True when the machine booted the shipped disk.img through firmware.
    pub shipped_disk: bool,
}

impl BootInfo {
    pub fn of(image: &ImageDir, mode: BootMode) -> Result<BootInfo, String> {
        let file = image.backing(mode);
        let sha256 = crate::image::sparse::sha256_file(file).map_err(|e| e.to_string())?;
        Ok(BootInfo {
            mode,
            file: file.display().to_string(),
            sha256,
            shipped_disk: mode == BootMode::UefiDisk,
        })
    }
}

impl Results {
    pub fn new(test: &str, description: &str, out_dir: &Path) -> Results {
        Results {
            format: 1,
            test: test.into(),
            description: description.into(),
            path: out_dir.join("results.json"),
            ..Default::default()
        }
    }

    pub fn step(
        &mut self,
        target: &str,
        action: &str,
        detail: &str,
        started: Instant,
        error: Option<&str>,
    ) {
        self.steps.push(Step {
            subtest: self.open.last().cloned(),
            target: target.into(),
            action: action.into(),
            detail: shorten(detail),
            ok: error.is_none(),
            duration_s: round(started.elapsed().as_secs_f64()),
            error: error.map(str::to_string),
        });
    }

    pub fn subtest(&mut self, name: &str, started: Instant, error: Option<&str>) {
        let name = self
            .open
            .iter()
            .chain(std::iter::once(&name.to_string()))
            .cloned()
            .collect::<Vec<_>>()
            .join(" / ");
        self.subtests.push(Subtest {
            name,
            passed: error.is_none(),
            duration_s: round(started.elapsed().as_secs_f64()),
            error: error.map(str::to_string),
        });
    }

    pub fn save(&self) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(&self.path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}

pub fn round(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_know_their_subtest_and_json_has_the_shape() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Results::new("smoke", "d", dir.path());
        let t = Instant::now();
        r.open.push("outer".into());
        r.step("server", "succeed", "true", t, None);
        r.subtest("inner", t, Some("boom"));
        r.save().unwrap();
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("results.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(v["steps"][0]["subtest"], "outer");
        assert_eq!(v["steps"][0]["ok"], true);
        assert_eq!(v["subtests"][0]["name"], "outer / inner");
        assert_eq!(v["subtests"][0]["passed"], false);
        assert!(v.get("open").is_none());
    }
}
