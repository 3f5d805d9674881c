//! A hand-made `hardroot build` output (overlay + manifest.json + config.json)
//! for the image tests, so they do not depend on the evaluator's state. Its
//! shape follows the manifest contract in docs/modules.md and the lead's brief.
#![allow(dead_code)]
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const SDE: i64 = 1_700_000_000;

/// The packages of the test base: boot essentials plus openssh-server, whose
/// postinst bakes host keys (scrub test) and which creates the `sshd` user and
/// the `_ssh` group (owner-name test).
pub const PACKAGES: &[&str] = &[
    "e2fsprogs",
    "initramfs-tools",
    "iproute2",
    "kmod",
    "linux-image-cloud-amd64",
    "openssh-server",
    "systemd-sysv",
    "udev",
];

pub struct FileSpec {
    pub path: &'static str,
    pub kind: &'static str,
    pub mode: &'static str,
    pub owner: &'static str,
    pub group: &'static str,
    pub content: &'static str,
    pub target: &'static str,
    pub early: bool,
}

const fn file(
    path: &'static str,
    mode: &'static str,
    owner: &'static str,
    group: &'static str,
    content: &'static str,
) -> FileSpec {
    FileSpec {
        path,
        kind: "file",
        mode,
        owner,
        group,
        content,
        target: "",
        early: false,
    }
}

const fn link(path: &'static str, target: &'static str) -> FileSpec {
    FileSpec {
        path,
        kind: "symlink",
        mode: "0777",
        owner: "root",
        group: "root",
        content: "",
        target,
        early: false,
    }
}

const fn dir(
    path: &'static str,
    mode: &'static str,
    owner: &'static str,
    group: &'static str,
) -> FileSpec {
    FileSpec {
        path,
        kind: "dir",
        mode,
        owner,
        group,
        content: "",
        target: "",
        early: false,
    }
}

const HELLO_UNIT: &str = "[Unit]\nDescription=hardroot test unit\n[Service]\nType=oneshot\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n";

/// Covers: a new folder with a named owner, files with named owners, a file
/// replacing a package's file, a merged-/usr path (lib → usr/lib), an enable
/// link, a mask link, and an early file.
pub fn default_entries() -> Vec<FileSpec> {
    vec![
        dir("etc/hardroot-test", "0750", "sshd", "_ssh"),
        file(
            "etc/hardroot-test/app.conf",
            "0640",
            "root",
            "_ssh",
            "answer = 42\n",
        ),
        file(
            "etc/hardroot-test/owned",
            "0600",
            "sshd",
            "root",
            "owned by sshd\n",
        ),
        file(
            "etc/ssh/sshd_config",
            "0644",
            "root",
            "root",
            "PasswordAuthentication no\nInclude /etc/ssh/sshd_config.d/*.conf\n",
        ),
        file(
            "lib/systemd/system/hardroot-vendor.service",
            "0644",
            "root",
            "root",
            HELLO_UNIT,
        ),
        file(
            "etc/systemd/system/hardroot-hello.service",
            "0644",
            "root",
            "root",
            HELLO_UNIT,
        ),
        link(
            "etc/systemd/system/multi-user.target.wants/hardroot-hello.service",
            "/etc/systemd/system/hardroot-hello.service",
        ),
        link("etc/systemd/system/apt-daily.timer", "/dev/null"),
        FileSpec {
            early: true,
            ..file(
                "etc/hardroot-early.conf",
                "0644",
                "root",
                "root",
                "# placed before packages are configured\n",
            )
        },
    ]
}

pub const FSTAB: &str =
    "LABEL=root\t/\text4\tdefaults\t0\t1\nLABEL=var\t/var\text4\tdefaults,nodev,nosuid\t0\t2\n";

/// The default entries plus what lands on the separate filesystems.
pub fn disk_entries() -> Vec<FileSpec> {
    let mut e = default_entries();
    e.push(file(
        "etc/hardroot/fstab.disk",
        "0644",
        "root",
        "root",
        FSTAB,
    ));
    e.push(dir("var/log/audit", "0700", "root", "root"));
    e.push(file(
        "home/hardroot/readme",
        "0640",
        "sshd",
        "root",
        "on the home partition\n",
    ));
    e.push(file(
        "var/lib/hardroot/state",
        "0600",
        "root",
        "root",
        "on the var partition\n",
    ));
    e
}

/// Writes build_dir/{overlay/, manifest.json, config.json}.
pub fn write_build(build_dir: &Path, entries: &[FileSpec], disable: &[&str]) -> PathBuf {
    let overlay = build_dir.join("overlay");
    std::fs::create_dir_all(&overlay).expect("create overlay");
    let mut all = Vec::new();
    for e in entries {
        add_parents(&overlay, e.path, &mut all);
        all.push(write_entry(&overlay, e));
    }
    all.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    all.dedup_by(|a, b| a["path"] == b["path"]);
    let manifest = json!({
        "format": 1,
        "profile": "image-test",
        "source_date_epoch": SDE,
        "root_hash": root_hash(&all),
        "packages": PACKAGES,
        "units": {"enable": [], "mask": ["apt-daily.timer"], "disable": disable},
        "entries": all,
    });
    write_json(&build_dir.join("manifest.json"), &manifest);
    let mut cfg = config();
    if entries.iter().any(|e| e.path == "etc/hardroot/fstab.disk") {
        cfg["disk"] = disk_config();
    }
    write_json(&build_dir.join("config.json"), &cfg);
    build_dir.to_path_buf()
}

/// Implicit parent folders, as the emitter writes them: no module, 0755 root.
fn add_parents(overlay: &Path, path: &str, all: &mut Vec<Value>) {
    let parts: Vec<&str> = path.split('/').collect();
    for i in 1..parts.len() {
        let p = parts[..i].join("/");
        std::fs::create_dir_all(overlay.join(&p)).expect("mkdir");
        all.push(
            json!({"path": p, "type": "dir", "mode": "0755", "owner": "root", "group": "root",
                        "uid": 0, "gid": 0, "early": false, "module": ""}),
        );
    }
}

fn write_entry(overlay: &Path, e: &FileSpec) -> Value {
    let full = overlay.join(e.path);
    let mut v = json!({"path": e.path, "type": e.kind, "mode": e.mode, "owner": e.owner, "group": e.group,
                       "uid": id(e.owner), "gid": id(e.group), "early": e.early, "module": "image-test"});
    match e.kind {
        "file" => {
            std::fs::write(&full, e.content).expect("write");
            let mode = u32::from_str_radix(e.mode, 8).expect("mode");
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode)).expect("chmod");
            v["size"] = json!(e.content.len());
            v["sha256"] = json!(hex(&Sha256::digest(e.content.as_bytes())));
        }
        "symlink" => {
            let _ = std::fs::remove_file(&full);
            std::os::unix::fs::symlink(e.target, &full).expect("symlink");
            v["target"] = json!(e.target);
        }
        _ => std::fs::create_dir_all(&full).expect("mkdir"),
    }
    v
}

fn id(name: &str) -> Value {
    if name == "root" {
        json!(0)
    } else {
        Value::Null
    }
}

fn root_hash(entries: &[Value]) -> String {
    hex(&Sha256::digest(serde_json::to_vec(entries).expect("json")))
}

/// The disk module's evaluated options, small enough for the test base.
pub fn disk_config() -> Value {
    json!({
        "filesystems": [
            {"mount": "/var", "label": "var", "size_mib": 512, "options": "nodev,nosuid"},
            {"mount": "/var/tmp", "label": "var-tmp", "size_mib": 64, "options": "nodev,nosuid,noexec"},
            {"mount": "/var/log", "label": "var-log", "size_mib": 64, "options": "nodev,nosuid,noexec"},
            {"mount": "/var/log/audit", "label": "var-log-audit", "size_mib": 64, "options": "nodev,nosuid,noexec"},
            {"mount": "/home", "label": "home", "size_mib": 64, "options": "nodev,nosuid"}
        ],
        "root_size_mib": 0,
        "grow": "/var"
    })
}

pub fn config() -> Value {
    json!({
        "system": {
            "suite": "bookworm",
            "architecture": "amd64",
            "variant": "minbase",
            "dpkg_path_exclude": ["/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*"],
            "dpkg_path_include": ["/usr/share/doc/*/copyright"],
            "scrub": system_scrub(),
            "image_free_mib": 256,
            "root_label": "root"
        }
    })
}

/// The golden-image scrub list the `system` module sets, read from its
/// module.toml so that the test base is scrubbed as a profile's is.
pub fn system_scrub() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("modules/system/module.toml");
    let text = std::fs::read_to_string(&path).expect("modules/system/module.toml");
    let doc: toml_edit::DocumentMut = text.parse().expect("module.toml parses");
    let sets = doc["set"].as_array_of_tables().expect("[[set]] tables");
    let scrub = sets
        .iter()
        .find(|t| t.get("option").and_then(|o| o.as_str()) == Some("system.scrub"))
        .expect("the system module sets system.scrub");
    scrub["value"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(v).expect("json")).expect("write json");
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Shared between the image tests so the base is bootstrapped once:
/// HARDROOT_TEST_CACHE (scripts/test.sh: ~/.cache/hardroot-tests, kept
/// between runs), else under target/.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("HARDROOT_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hardroot-image-cache"))
}

/// A disk-image request for a hand-made build, with the shared test cache.
pub fn request(build: &Path, out: &Path) -> hardroot::image::ImageRequest {
    hardroot::image::ImageRequest {
        build_dir: build.to_path_buf(),
        out: out.to_path_buf(),
        cache_dir: cache_dir(),
        rebuild_base: false,
        qcow2: false,
        disk: true,
        sources: vec![],
        quiet: false,
        pinned: None,
        snapshot: None,
        shared: Default::default(),
    }
}
