//! Finding and reading the report's input files. Only results.json is
//! required: every other input may be missing (an older run, a test that
//! stopped early), and the page then says which file it lacked instead of
//! failing.
use super::load_faults::{self, LoadFaults};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Rendered files the report compares against (the "asked for" side of the
/// firewall chains); everything else it asks comes from config.json.
/// Rendered files never hold secrets: keys and passwords are generated on
/// the machine.
pub const OVERLAY_FILES: &[&str] = &["etc/iptables/rules.v4", "etc/iptables/rules.v6"];

const BUILD_FILES: &[&str] = &[
    "manifest.json",
    "config.json",
    "image-manifest.json",
    "sbom.cdx.json",
    "verify.json",
];

/// Facts files are small; this only guards against reading a runaway file whole.
const MAX_TEXT: u64 = 8 << 20;

pub struct Inputs {
    pub run: PathBuf,
    pub results: Value,
    pub build: Build,
    pub exposure: Option<Value>,
    /// OUT/load-faults.json: absent (the test did not run that part), read, or why not.
    pub load_faults: Result<Option<LoadFaults>, String>,
    pub against: Option<Build>,
    /// Optional inputs that were present but unreadable: shown on the page.
    pub problems: Vec<String>,
}

/// One image's identity: a build/image output folder (or its snapshot in RUN/build).
#[derive(Default)]
pub struct Build {
    pub dir: Option<PathBuf>,
    pub manifest: Option<Value>,
    pub config: Option<Value>,
    pub image_manifest: Option<Value>,
    /// The image's CycloneDX SBOM and the last `hardroot verify` verdict (both optional).
    pub sbom: Option<Value>,
    pub verify: Option<Value>,
}

impl Inputs {
    pub fn load(
        run: &Path,
        image: Option<&Path>,
        against: Option<&Path>,
    ) -> Result<Inputs, String> {
        let results = read_json(&run.join("results.json"))?
            .ok_or_else(|| format!("{} has no results.json", run.display()))?;
        let mut problems = Vec::new();
        let mut build = Build::load(build_dir(run, image).as_deref(), &mut problems);
        build.fill_from_machine_files(run, &results, &mut problems);
        let exposure = optional_json(&run.join("exposure.json"), &mut problems);
        let load_faults = read_typed(&run.join(load_faults::FILE), load_faults::SHAPE);
        if let Err(e) = &load_faults {
            problems.push(e.clone());
        }
        let against = match against {
            Some(dir) => {
                let found = build_dir(dir, None).ok_or_else(|| {
                    format!(
                        "--against {}: neither it nor its build/ holds a manifest.json; give a `hardroot build`/`image` output or a report run folder",
                        dir.display()
                    )
                })?;
                Some(Build::load(Some(&found), &mut problems))
            }
            None => None,
        };
        Ok(Inputs {
            run: run.to_path_buf(),
            results,
            build,
            exposure,
            load_faults,
            against,
            problems,
        })
    }

    /// A text file of the run's facts/ folder (see docs/testing.md).
    pub fn fact(&self, name: &str) -> Option<String> {
        read_text(&self.run.join("facts").join(name))
    }

    /// Any text file of the run folder, by relative path.
    pub fn run_file(&self, rel: &str) -> Option<String> {
        read_text(&self.run.join(rel))
    }

    /// Text files of the run folder whose names start and end so, in name order.
    pub fn run_files(&self, prefix: &str, suffix: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.run) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
            })
            .collect();
        paths.sort();
        paths.iter().filter_map(|p| read_text(p)).collect()
    }

    /// A rendered overlay file of the tested image, if the build folder has it.
    pub fn overlay_file(&self, rel: &str) -> Option<String> {
        let dir = self.build.dir.as_ref()?;
        read_text(&dir.join("overlay").join(rel))
    }

    pub fn config(&self, module: &str, option: &str) -> Option<&Value> {
        self.build.config.as_ref()?.get(module)?.get(option)
    }
}

impl Build {
    fn load(dir: Option<&Path>, problems: &mut Vec<String>) -> Build {
        let Some(dir) = dir else {
            return Build::default();
        };
        Build {
            dir: Some(dir.to_path_buf()),
            manifest: optional_json(&dir.join("manifest.json"), problems),
            config: optional_json(&dir.join("config.json"), problems),
            image_manifest: optional_json(&dir.join("image-manifest.json"), problems),
            sbom: optional_json(&dir.join("sbom.cdx.json"), problems),
            verify: optional_json(&dir.join("verify.json"), problems),
        }
    }
}

impl Build {
    /// The driver also keeps each machine's manifests as OUT/MACHINE.manifest.json
    /// and OUT/MACHINE.config.json: used for what RUN/build lacks (first machine).
    fn fill_from_machine_files(&mut self, run: &Path, results: &Value, problems: &mut Vec<String>) {
        // results.json names its machines only once the test is over.
        let named = results
            .get("machines")
            .and_then(Value::as_object)
            .and_then(|m| m.keys().next().cloned());
        let Some(machine) = named.or_else(|| first_machine_file(run)) else {
            return;
        };
        let file = |name: &str| run.join(format!("{machine}.{name}"));
        if self.manifest.is_none() {
            self.manifest = optional_json(&file("manifest.json"), problems);
        }
        if self.config.is_none() {
            self.config = optional_json(&file("config.json"), problems);
        }
        if self.image_manifest.is_none() {
            self.image_manifest = optional_json(&file("image-manifest.json"), problems);
        }
    }
}

/// MACHINE of the first OUT/MACHINE.manifest.json or .config.json in name order.
fn first_machine_file(run: &Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(run)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let machine = name
                .strip_suffix(".manifest.json")
                .or_else(|| name.strip_suffix(".config.json"))?;
            Some(machine.to_string())
        })
        .filter(|n| !n.is_empty() && n != "image")
        .collect();
    names.sort();
    names.into_iter().next()
}

/// The folder holding the image's manifests: the one named, else RUN/build
/// (the snapshot), else RUN itself.
fn build_dir(run: &Path, image: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = image {
        return Some(dir.to_path_buf());
    }
    [run.join("build"), run.to_path_buf()]
        .into_iter()
        .find(|d| BUILD_FILES.iter().any(|f| d.join(f).is_file()))
}

/// Copies the image's manifests and the rendered files the report compares
/// against into RUN/build/, so the run folder alone can make the report again.
/// A build and its image may be two folders: each file comes from the first
/// folder that has it. `fresh` (a run that just ended) replaces RUN/build, so
/// nothing of an older run mixes in; otherwise (`hardroot report --image`)
/// the files given replace their namesakes and the rest stays.
pub fn snapshot_build(dirs: &[PathBuf], run: &Path, fresh: bool) -> Result<(), String> {
    let dest = run.join("build");
    if dirs.iter().any(|d| same_dir(d, &dest)) {
        return Ok(());
    }
    if fresh && dest.exists() {
        std::fs::remove_dir_all(&dest)
            .map_err(|e| format!("cannot replace {}: {e}", dest.display()))?;
    }
    let mut wanted: Vec<(PathBuf, PathBuf)> = BUILD_FILES
        .iter()
        .map(|n| (PathBuf::from(n), dest.join(n)))
        .collect();
    wanted.extend(
        OVERLAY_FILES
            .iter()
            .map(|r| (Path::new("overlay").join(r), dest.join("overlay").join(r))),
    );
    let mut copied = 0;
    for (rel, to) in &wanted {
        if let Some(from) = dirs.iter().map(|d| d.join(rel)).find(|p| p.is_file()) {
            copied += copy_if_present(&from, to)?;
        }
    }
    if copied == 0 {
        eprintln!(
            "warning: no manifest.json, config.json or image-manifest.json in {}; the report will lack the image's identity",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn copy_if_present(from: &Path, to: &Path) -> Result<usize, String> {
    if !from.is_file() {
        return Ok(0);
    }
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::copy(from, to)
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))?;
    // The page shows when the image was made: keep the original's time.
    if let Ok(t) = std::fs::metadata(from).and_then(|m| m.modified()) {
        let _ = std::fs::File::options()
            .write(true)
            .open(to)
            .and_then(|f| f.set_modified(t));
    }
    Ok(1)
}

fn optional_json(path: &Path, problems: &mut Vec<String>) -> Option<Value> {
    match read_json(path) {
        Ok(v) => v,
        Err(e) => {
            problems.push(e);
            None
        }
    }
}

/// Ok(None) when the file does not exist; Err when it exists but is not JSON.
fn read_json(path: &Path) -> Result<Option<Value>, String> {
    if !path.exists() {
        return Ok(None);
    }
    let text = read_text(path).ok_or_else(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))
}

/// A file the test wrote in a shape the report knows (a serde type):
/// Ok(None) when it does not exist; Err naming the file, the shape it
/// should have and where reading stopped (serde_json's line and column).
fn read_typed<T: DeserializeOwned>(path: &Path, shape: &str) -> Result<Option<T>, String> {
    if !path.exists() {
        return Ok(None);
    }
    let text = read_text(path).ok_or_else(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("{} is not {shape}: {e}", path.display()))
}

/// Lossy: guest output may hold any bytes; the page shows them escaped.
pub fn read_text(path: &Path) -> Option<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_TEXT).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}
