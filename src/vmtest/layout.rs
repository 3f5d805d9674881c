//! The disk layout a machine booted, declared against live: the partition
//! table and the mounts that image-manifest.json records (what the `disk`
//! module declared and the image stage wrote) against `lsblk` and `findmnt`
//! in the guest. One rule for the test (`check_layout`, which fails on any
//! difference) and the report (which shows OUT/<machine>.layout.json).
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Run in the guest; their JSON is what `compare` reads as live.
pub const FINDMNT: &str = "findmnt --json --list -o TARGET,SOURCE,FSTYPE,OPTIONS,LABEL";
pub const LSBLK: &str = "lsblk --json --bytes -o NAME,TYPE,PARTLABEL,PARTUUID,SIZE";

/// Mount flags a declared option must show live (the CIS 1.1.x ones, and ro).
const FLAGS: [&str; 4] = ["nodev", "nosuid", "noexec", "ro"];

#[derive(Debug, Serialize, Deserialize, Default)]
pub struct Layout {
    /// Why there is nothing to compare (a direct-kernel boot), else empty.
    pub skipped: String,
    pub partitions: Vec<PartRow>,
    pub mounts: Vec<MountRow>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PartRow {
    pub number: u64,
    pub label: String,
    pub mount: String,
    pub partuuid: String,
    pub declared_bytes: u64,
    pub live_bytes: Option<u64>,
    pub grows: bool,
    pub ok: bool,
    pub why: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct MountRow {
    pub target: String,
    pub declared_source: String,
    pub declared_fstype: String,
    pub declared_options: String,
    pub live_source: String,
    pub live_fstype: String,
    pub live_options: String,
    pub ok: bool,
    pub why: String,
}

impl Layout {
    /// Every row that differs, one line each (empty when all match).
    pub fn differences(&self) -> Vec<String> {
        let parts = self
            .partitions
            .iter()
            .filter(|p| !p.ok)
            .map(|p| format!("partition {} ({}): {}", p.number, p.label, p.why));
        let mounts = self
            .mounts
            .iter()
            .filter(|m| !m.ok)
            .map(|m| format!("mount {}: {}", m.target, m.why));
        parts.chain(mounts).collect()
    }
}

/// `disk` is image-manifest.json's `disk` object; `findmnt` and `lsblk` the
/// guest's JSON output of FINDMNT and LSBLK.
pub fn compare(disk: &Value, findmnt: &Value, lsblk: &Value) -> Layout {
    let live_mounts = findmnt["filesystems"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let live_parts = partitions_of(lsblk);
    Layout {
        skipped: String::new(),
        partitions: list(disk, "partitions")
            .iter()
            .map(|p| part_row(p, &live_parts))
            .collect(),
        mounts: list(disk, "mounts")
            .iter()
            .map(|m| mount_row(m, &live_mounts))
            .collect(),
    }
}

fn list(v: &Value, key: &str) -> Vec<Value> {
    v[key].as_array().cloned().unwrap_or_default()
}

fn s(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

/// Every partition lsblk lists, whatever disk it is on.
fn partitions_of(lsblk: &Value) -> Vec<Value> {
    fn walk(v: &Value, out: &mut Vec<Value>) {
        for d in v.as_array().into_iter().flatten() {
            if d["type"] == "part" {
                out.push(d.clone());
            }
            walk(&d["children"], out);
        }
    }
    let mut out = Vec::new();
    walk(&lsblk["blockdevices"], &mut out);
    out
}

fn part_row(p: &Value, live: &[Value]) -> PartRow {
    let label = s(p, "label");
    let partuuid = s(p, "partuuid");
    let declared = p["size_bytes"].as_u64().unwrap_or(0);
    let grows = p["grows"].as_bool().unwrap_or(false);
    let found = live.iter().find(|l| s(l, "partlabel") == label);
    let live_bytes = found.and_then(|l| l["size"].as_u64());
    let mut why = Vec::new();
    match found {
        None => why.push("no partition with this name on the booted disk".to_string()),
        Some(l) if !s(l, "partuuid").eq_ignore_ascii_case(&partuuid) => why.push(format!(
            "PARTUUID {} (declared {partuuid})",
            s(l, "partuuid")
        )),
        Some(_) => {}
    }
    match live_bytes {
        Some(b) if b < declared || (b > declared && !grows) => {
            why.push(format!("{b} bytes (declared {declared})"))
        }
        _ => {}
    }
    PartRow {
        number: p["number"].as_u64().unwrap_or(0),
        label,
        mount: s(p, "mount"),
        partuuid,
        declared_bytes: declared,
        live_bytes,
        grows,
        ok: why.is_empty(),
        why: why.join("; "),
    }
}

fn mount_row(m: &Value, live: &[Value]) -> MountRow {
    let target = s(m, "target");
    let (source, fstype, options) = (s(m, "source"), s(m, "fstype"), s(m, "options"));
    // The last mount on a target is the one in effect.
    let found = live.iter().rev().find(|l| s(l, "target") == target);
    let mut why = Vec::new();
    if let Some(l) = found {
        why.extend(mount_differences(&source, &fstype, &options, l));
    } else {
        why.push("not mounted".to_string());
    }
    let live_field = |k: &str| found.map(|l| s(l, k)).unwrap_or_default();
    MountRow {
        declared_source: source,
        declared_fstype: fstype,
        declared_options: options,
        live_source: live_field("source"),
        live_fstype: live_field("fstype"),
        live_options: live_field("options"),
        ok: why.is_empty(),
        why: why.join("; "),
        target,
    }
}

fn mount_differences(source: &str, fstype: &str, options: &str, live: &Value) -> Vec<String> {
    let mut why = Vec::new();
    let live_fstype = s(live, "fstype");
    if live_fstype != fstype {
        why.push(format!("{live_fstype} (declared {fstype})"));
    }
    if let Some(label) = source.strip_prefix("LABEL=")
        && s(live, "label") != label
    {
        why.push(format!(
            "filesystem label {:?} (declared {label})",
            s(live, "label")
        ));
    }
    let live_opts: Vec<String> = s(live, "options").split(',').map(str::to_string).collect();
    for opt in options.split(',').filter(|o| FLAGS.contains(o)) {
        if !live_opts.iter().any(|l| l == opt) {
            why.push(format!("mounted without {opt}"));
        }
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn disk() -> Value {
        json!({
            "partitions": [
                { "number": 2, "label": "root", "mount": "/", "partuuid": "AB-CD", "size_bytes": 100, "grows": false },
                { "number": 3, "label": "var", "mount": "/var", "partuuid": "EF-01", "size_bytes": 50, "grows": true },
            ],
            "mounts": [
                { "source": "LABEL=var", "target": "/var", "fstype": "ext4", "options": "defaults,nodev,nosuid,x-systemd.growfs" },
                { "source": "tmpfs", "target": "/tmp", "fstype": "tmpfs", "options": "defaults,nodev,nosuid,noexec,mode=1777" },
            ],
        })
    }

    fn lsblk(var_bytes: u64, root_bytes: u64) -> Value {
        json!({ "blockdevices": [{ "name": "vda", "type": "disk", "children": [
            { "name": "vda2", "type": "part", "partlabel": "root", "partuuid": "ab-cd", "size": root_bytes },
            { "name": "vda3", "type": "part", "partlabel": "var", "partuuid": "ef-01", "size": var_bytes },
        ]}]})
    }

    fn findmnt(tmp_opts: &str) -> Value {
        json!({ "filesystems": [
            { "target": "/var", "source": "/dev/vda3", "fstype": "ext4", "options": "rw,nosuid,nodev,relatime", "label": "var" },
            { "target": "/tmp", "source": "tmpfs", "fstype": "tmpfs", "options": tmp_opts, "label": null },
        ]})
    }

    #[test]
    fn a_layout_as_declared_passes_and_the_growing_partition_may_be_larger() {
        let l = compare(
            &disk(),
            &findmnt("rw,nosuid,nodev,noexec"),
            &lsblk(500, 100),
        );
        assert!(l.differences().is_empty(), "{:?}", l.differences());
        assert_eq!(l.partitions[1].live_bytes, Some(500));
    }

    #[test]
    fn a_missing_flag_a_resized_partition_and_a_missing_mount_are_named() {
        let l = compare(&disk(), &findmnt("rw,nosuid,nodev"), &lsblk(50, 200));
        let d = l.differences().join("\n");
        assert!(d.contains("mount /tmp: mounted without noexec"), "{d}");
        assert!(
            d.contains("partition 2 (root): 200 bytes (declared 100)"),
            "{d}"
        );
        let none = compare(&disk(), &json!({ "filesystems": [] }), &lsblk(50, 100));
        assert!(
            none.differences()
                .iter()
                .any(|x| x == "mount /var: not mounted")
        );
    }
}
