//! Section 1, the disk: which file each machine booted (the driver's sha256
//! against image-manifest.json's), and the booted disk's partitions and
//! mounts, declared against live (RUN/<machine>.layout.json, written by the
//! test's `check_layout`).
use super::identity::{dash, text};
use super::inputs::Inputs;
use super::page::Cell;
use serde::Serialize;
use serde_json::Value;

#[derive(Serialize, Default)]
pub struct Disk {
    pub booted: Vec<Booted>,
    /// image-manifest.json's disk.img and disk.qcow2 sha256, when the image has a disk.
    pub disk_sha256: String,
    pub qcow2_sha256: String,
    pub layouts: Vec<MachineLayout>,
    pub bad: usize,
}

#[derive(Serialize)]
pub struct Booted {
    pub machine: String,
    pub file: String,
    pub sha256: String,
    /// Whether this is the shipped disk, and whether its hash is the manifest's.
    pub verdict: Cell,
}

#[derive(Serialize)]
pub struct MachineLayout {
    pub machine: String,
    pub skipped: String,
    pub partitions: Vec<PartRow>,
    pub mounts: Vec<MountRow>,
}

#[derive(Serialize)]
pub struct PartRow {
    pub number: String,
    pub label: String,
    pub mount: String,
    pub partuuid: String,
    pub declared: String,
    pub live: Cell,
}

#[derive(Serialize)]
pub struct MountRow {
    pub target: String,
    pub declared: String,
    pub live: Cell,
}

pub fn collect(inputs: &Inputs) -> Disk {
    let im = inputs.build.image_manifest.as_ref();
    let sha = |p: &str| im.and_then(|v| v.pointer(p)).map(text).unwrap_or_else(dash);
    let mut d = Disk {
        disk_sha256: sha("/disk/sha256"),
        qcow2_sha256: sha("/disk/qcow2/sha256"),
        ..Disk::default()
    };
    let machines = inputs.results["machines"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (name, info) in &machines {
        if let Some(boot) = info.get("boot").filter(|b| b.is_object()) {
            d.booted.push(booted(name, boot, &d.disk_sha256));
        }
        if let Some(l) = read_layout(inputs, name) {
            d.layouts.push(layout(name, &l));
        }
    }
    d.bad = d.booted.iter().filter(|b| b.verdict.state == "bad").count()
        + d.layouts
            .iter()
            .map(|l| {
                l.partitions
                    .iter()
                    .filter(|p| p.live.state == "bad")
                    .count()
                    + l.mounts.iter().filter(|m| m.live.state == "bad").count()
            })
            .sum::<usize>();
    d
}

fn booted(machine: &str, boot: &Value, manifest_sha: &str) -> Booted {
    let sha256 = boot.get("sha256").map(text).unwrap_or_else(dash);
    let verdict = if boot["shipped_disk"].as_bool() != Some(true) {
        Cell::warn("not the shipped disk: rootfs.img with a direct kernel (--direct-kernel)")
    } else if sha256 == manifest_sha {
        Cell::ok("the shipped disk.img through UEFI firmware; sha256 as in image-manifest.json")
    } else {
        Cell::bad(&format!(
            "the booted disk's sha256 is not image-manifest.json's ({manifest_sha})"
        ))
    };
    Booted {
        machine: machine.into(),
        file: boot.get("file").map(text).unwrap_or_else(dash),
        sha256,
        verdict,
    }
}

fn read_layout(inputs: &Inputs, machine: &str) -> Option<Value> {
    let text = std::fs::read_to_string(inputs.run.join(format!("{machine}.layout.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

fn layout(machine: &str, l: &Value) -> MachineLayout {
    let rows = |k: &str| l[k].as_array().cloned().unwrap_or_default();
    let partitions = rows("partitions")
        .iter()
        .map(|p| {
            let declared = bytes(&p["declared_bytes"]);
            let live = match p["live_bytes"].as_u64() {
                Some(b) if p["grows"] == true && Some(b) != p["declared_bytes"].as_u64() => {
                    format!("{} (grown)", mib(b))
                }
                Some(b) => mib(b),
                None => dash(),
            };
            PartRow {
                number: text(&p["number"]),
                label: text(&p["label"]),
                mount: text(&p["mount"]),
                partuuid: text(&p["partuuid"]),
                declared: if p["grows"] == true {
                    format!("{declared}, grows")
                } else {
                    declared
                },
                live: verdict(p, &live),
            }
        })
        .collect();
    let mounts = rows("mounts")
        .iter()
        .map(|m| MountRow {
            target: text(&m["target"]),
            declared: format!(
                "{} {} {}",
                text(&m["declared_source"]),
                text(&m["declared_fstype"]),
                text(&m["declared_options"])
            ),
            live: verdict(
                m,
                &format!(
                    "{} {} {}",
                    text(&m["live_source"]),
                    text(&m["live_fstype"]),
                    text(&m["live_options"])
                ),
            ),
        })
        .collect();
    MachineLayout {
        machine: machine.into(),
        skipped: l["skipped"].as_str().unwrap_or_default().into(),
        partitions,
        mounts,
    }
}

fn verdict(row: &Value, live: &str) -> Cell {
    if row["ok"] == true {
        Cell::ok(live)
    } else {
        Cell::bad(&format!("{live}: {}", text(&row["why"])))
    }
}

fn bytes(v: &Value) -> String {
    v.as_u64().map(mib).unwrap_or_else(dash)
}

fn mib(b: u64) -> String {
    format!("{} MiB", b >> 20)
}
