//! `hardroot push` / `hardroot pull` against a real registry: Debian's
//! docker-registry (the CNCF distribution registry), started here on
//! 127.0.0.1 with a throw-away storage folder. The image folder is made by
//! hand (image-manifest.json with the files' real sha256s), so these tests
//! need neither root nor a bootstrap.
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const USER: &str = "fleet";
const PASSWORD: &str = "s3cret-Pa55word";

struct Registry {
    child: Option<Child>,
    port: u16,
    config: PathBuf,
    storage: PathBuf,
}

impl Registry {
    fn start(tmp: &Path, with_auth: bool) -> Registry {
        let port = free_port();
        let storage = tmp.join("storage");
        std::fs::create_dir_all(&storage).expect("storage");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if with_auth {
            let htpasswd = tmp.join("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbn", USER, PASSWORD])
                .output()
                .expect("htpasswd (apache2-utils, scripts/deps.sh) must be installed");
            assert!(out.status.success());
            std::fs::write(&htpasswd, &out.stdout).expect("htpasswd file");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: hardroot-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let path = tmp.join("config.yml");
        std::fs::write(&path, config).expect("config");
        let mut r = Registry {
            child: None,
            port,
            config: path,
            storage,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        // Debian names the distribution registry docker-registry; nixpkgs' docker-distribution, registry.
        let bin = if Command::new("docker-registry")
            .arg("--version")
            .output()
            .is_ok()
        {
            "docker-registry"
        } else {
            "registry"
        };
        let child = Command::new(bin)
            .arg("serve")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (scripts/deps.sh) must be installed");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "registry did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn reference(&self, repo: &str) -> String {
        format!("127.0.0.1:{}/{repo}", self.port)
    }

    /// Bytes of unfinished uploads in the storage folder.
    fn upload_bytes(&self) -> u64 {
        walkdir::WalkDir::new(&self.storage)
            .into_iter()
            .flatten()
            .filter(|e| {
                let p = e.path();
                p.to_string_lossy().contains("/_uploads/") && p.ends_with("data")
            })
            .filter_map(|e| e.metadata().ok().map(|m| m.len()))
            .sum()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn hardroot(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hardroot"));
    c.args(args);
    for v in [
        "HARDROOT_REGISTRY_USERNAME",
        "HARDROOT_REGISTRY_PASSWORD",
        "HARDROOT_REGISTRY_AUTH_FILE",
    ] {
        c.env_remove(v);
    }
    // docker's own config of whoever runs the tests is not read.
    c.env("DOCKER_CONFIG", "/nonexistent");
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic bytes that do not compress (a disk image's worth of entropy).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// An image folder as `hardroot image` leaves it, with a disk of `disk_mib`.
fn image_dir(dir: &Path, disk_mib: usize, seed: u64) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    let disk = noise(disk_mib << 20, seed);
    let qcow2 = noise(300_000, seed + 1);
    let sbom = br#"{"bomFormat":"CycloneDX","specVersion":"1.5"}"#.to_vec();
    std::fs::write(dir.join("disk.img"), &disk).expect("disk");
    std::fs::write(dir.join("disk.qcow2"), &qcow2).expect("qcow2");
    std::fs::write(dir.join("sbom.cdx.json"), &sbom).expect("sbom");
    let manifest = json!({
        "format": 1,
        "profile": "web",
        "source_date_epoch": 1_700_000_000,
        "overlay_root_hash": "ab".repeat(32),
        "disk": {
            "file": "disk.img",
            "sha256": sha256(&disk),
            "qcow2": { "file": "disk.qcow2", "sha256": sha256(&qcow2) },
        },
        "sbom": { "file": "sbom.cdx.json", "sha256": sha256(&sbom) },
    });
    std::fs::write(
        dir.join("image-manifest.json"),
        serde_json::to_string_pretty(&manifest).expect("json"),
    )
    .expect("manifest");
    dir.to_path_buf()
}

const FILES: &[&str] = &[
    "disk.img",
    "disk.qcow2",
    "image-manifest.json",
    "sbom.cdx.json",
];

fn same_files(a: &Path, b: &Path, names: &[&str]) {
    for n in names {
        let x = std::fs::read(a.join(n)).unwrap_or_else(|e| panic!("{n} in {}: {e}", a.display()));
        let y = std::fs::read(b.join(n)).unwrap_or_else(|e| panic!("{n} in {}: {e}", b.display()));
        assert!(x == y, "{n} differs after the round trip");
    }
}

/// The manifest as the registry serves it (curl, not our client).
fn served_manifest(reg: &Registry, repo: &str, tag: &str, user: Option<&str>) -> Value {
    let mut c = Command::new("curl");
    c.args([
        "-sf",
        "-H",
        "Accept: application/vnd.oci.image.manifest.v1+json",
    ]);
    if let Some(u) = user {
        c.args(["-u", u]);
    }
    let out = c
        .arg(format!(
            "http://127.0.0.1:{}/v2/{repo}/manifests/{tag}",
            reg.port
        ))
        .output()
        .expect("curl");
    assert!(out.status.success(), "manifest not served: {}", text(&out));
    serde_json::from_slice(&out.stdout).expect("manifest json")
}

fn push(dir: &Path, reference: &str) -> Output {
    hardroot(&["push"])
        .arg(dir)
        .arg(reference)
        .output()
        .expect("run hardroot push")
}

fn push_with_report(dir: &Path, reference: &str, report: &Path) -> Output {
    hardroot(&["push", "--report"])
        .arg(report)
        .arg(dir)
        .arg(reference)
        .output()
        .expect("run hardroot push")
}

fn pull(reference: &str, out: &Path) -> Output {
    hardroot(&["pull", reference, "-o"])
        .arg(out)
        .output()
        .expect("run hardroot pull")
}

#[test]
fn push_then_pull_gives_the_same_files_as_one_annotated_artifact() {
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::start(&tmp.path().join("reg"), false);
    let img = image_dir(&tmp.path().join("img"), 9, 7);
    let report = tmp.path().join("report.html");
    std::fs::write(&report, "<html>passed</html>").expect("report");
    let reference = reg.reference("fleet/web:1");

    let out = push_with_report(&img, &reference, &report);
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let digest = printed
        .strip_prefix(&format!("{reference}@"))
        .unwrap_or_else(|| panic!("push printed {printed:?}"))
        .to_string();

    // What the registry serves: one OCI 1.1 artifact, its layers typed and titled.
    let m = served_manifest(&reg, "fleet/web", "1", None);
    assert_eq!(m["artifactType"], "application/vnd.hardroot.image.v1");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(m["annotations"]["dev.hardroot.profile"], "web");
    assert_eq!(
        m["annotations"]["dev.hardroot.overlay-root-hash"],
        "ab".repeat(32)
    );
    assert_eq!(
        m["annotations"]["dev.hardroot.source-date-epoch"],
        "1700000000"
    );
    assert_eq!(
        m["annotations"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    let layers: Vec<(String, String, String)> = m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            (
                l["annotations"]["org.opencontainers.image.title"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                l["mediaType"].as_str().unwrap_or_default().to_string(),
                l["digest"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let titles: Vec<&str> = layers.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(
        titles,
        [
            "disk.img",
            "disk.qcow2",
            "image-manifest.json",
            "sbom.cdx.json",
            "report.html"
        ]
    );
    assert_eq!(layers[0].1, "application/vnd.hardroot.disk.raw");
    assert_eq!(layers[3].1, "application/vnd.cyclonedx+json");
    assert_eq!(layers[4].1, "text/html");
    let disk_sha = sha256(&std::fs::read(img.join("disk.img")).expect("disk"));
    assert_eq!(
        layers[0].2,
        format!("sha256:{disk_sha}"),
        "a layer's digest is the file's sha256"
    );

    // Pull by tag and by the printed digest: the same bytes, in place.
    let back = tmp.path().join("back");
    let out = pull(&reference, &back);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), printed);
    same_files(&img, &back, FILES);
    assert_eq!(
        std::fs::read_to_string(back.join("report.html")).expect("report"),
        "<html>passed</html>"
    );
    let by_digest = tmp.path().join("by-digest");
    let out = pull(
        &format!("{}@{digest}", reg.reference("fleet/web")),
        &by_digest,
    );
    assert!(out.status.success(), "{}", text(&out));
    same_files(&img, &by_digest, FILES);

    // Pushing again sends nothing and names the same manifest.
    let out = push_with_report(&img, &reference, &report);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), printed);
    assert!(!text(&out).contains(" uploaded"), "{}", text(&out));
}

#[test]
fn pull_verifies_every_file_and_writes_nothing_when_one_is_wrong() {
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::start(&tmp.path().join("reg"), false);
    let img = image_dir(&tmp.path().join("img"), 2, 11);
    let reference = reg.reference("fleet/db:1");
    let out = push(&img, &reference);
    assert!(out.status.success(), "{}", text(&out));

    // The registry's stored qcow2 blob is changed behind its back.
    let qcow2_sha = sha256(&std::fs::read(img.join("disk.qcow2")).expect("qcow2"));
    let blob = reg
        .storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&qcow2_sha[..2])
        .join(&qcow2_sha)
        .join("data");
    let mut bytes = std::fs::read(&blob).expect("stored blob");
    bytes[1000] ^= 0xff;
    std::fs::write(&blob, bytes).expect("tamper");

    let back = tmp.path().join("back");
    let out = pull(&reference, &back);
    assert!(!out.status.success(), "a corrupted blob was accepted");
    let t = text(&out);
    assert!(t.contains("disk.qcow2") && t.contains(&qcow2_sha), "{t}");
    let left: Vec<_> = std::fs::read_dir(&back)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "files were written in place: {left:?}");
}

#[test]
fn push_refuses_an_image_changed_after_its_manifest_was_written() {
    let tmp = tempfile::tempdir().expect("tmp");
    let img = image_dir(&tmp.path().join("img"), 1, 5);
    std::fs::write(img.join("disk.qcow2"), b"not the recorded disk").expect("change");
    // No registry is needed: the check comes before any connection.
    let out = push(&img, "127.0.0.1:9/fleet/x:1");
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("disk.qcow2") && t.contains("image-manifest.json records"),
        "{t}"
    );
}

#[test]
fn basic_auth_credentials_come_from_the_environment_or_a_file_and_are_never_printed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::start(&tmp.path().join("reg"), true);
    let img = image_dir(&tmp.path().join("img"), 1, 3);
    let reference = reg.reference("private/web:1");

    let out = push(&img, &reference);
    assert!(!out.status.success(), "pushed without credentials");
    assert!(
        text(&out).contains("refused the credentials"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("HARDROOT_REGISTRY_USERNAME"),
        "{}",
        text(&out)
    );

    let out = hardroot(&["push"])
        .arg(&img)
        .arg(&reference)
        .env("HARDROOT_REGISTRY_USERNAME", USER)
        .env("HARDROOT_REGISTRY_PASSWORD", "wrong")
        .output()
        .expect("push");
    assert!(!out.status.success(), "a wrong password was accepted");
    assert!(!text(&out).contains("wrong"), "{}", text(&out));

    let out = hardroot(&["push"])
        .arg(&img)
        .arg(&reference)
        .env("HARDROOT_REGISTRY_USERNAME", USER)
        .env("HARDROOT_REGISTRY_PASSWORD", PASSWORD)
        .output()
        .expect("push");
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(PASSWORD), "the password was printed");
    served_manifest(
        &reg,
        "private/web",
        "1",
        Some(&format!("{USER}:{PASSWORD}")),
    );

    // A docker-config-style file (what `docker login` writes).
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let file = tmp.path().join("auth.json");
    let registry = format!("127.0.0.1:{}", reg.port);
    std::fs::write(
        &file,
        json!({ "auths": { registry: { "auth": auth } } }).to_string(),
    )
    .expect("auth file");
    let back = tmp.path().join("back");
    let out = hardroot(&["pull", &reference, "-o"])
        .arg(&back)
        .env("HARDROOT_REGISTRY_AUTH_FILE", &file)
        .output()
        .expect("pull");
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(PASSWORD) && !text(&out).contains(&auth));
    same_files(&img, &back, FILES);
}

/// Starts a push of a large disk and kills the registry once the upload is under way.
fn push_and_kill(reg: &mut Registry, img: &Path, reference: &str) -> Child {
    // A killed push's unfinished upload stays in the storage: count what is new.
    let before = reg.upload_bytes();
    let child = hardroot(&["push", "-q"])
        .arg(img)
        .arg(reference)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("push");
    let start = Instant::now();
    while reg.upload_bytes() < before + (8 << 20) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the upload never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    reg.kill();
    child
}

#[test]
fn a_registry_killed_mid_push_serves_nothing_half_written_and_the_next_push_completes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut reg = Registry::start(&tmp.path().join("reg"), false);
    let img = image_dir(&tmp.path().join("img"), 160, 13);
    let reference = reg.reference("fleet/big:1");

    // Killed and left down: the push gives up with a clear error.
    let child = push_and_kill(&mut reg, &img, &reference);
    let out = child.wait_with_output().expect("push");
    assert!(!out.status.success(), "the push claimed success");
    assert!(text(&out).contains("attempts"), "{}", text(&out));

    // Back up on the same storage: the tag names nothing, the disk's blob is unknown.
    reg.spawn();
    let out = pull(&reference, &tmp.path().join("none"));
    assert!(!out.status.success());
    assert!(text(&out).contains("no such artifact"), "{}", text(&out));
    let disk_sha = sha256(&std::fs::read(img.join("disk.img")).expect("disk"));
    let blob = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-I"])
        .arg(format!(
            "http://127.0.0.1:{}/v2/fleet/big/blobs/sha256:{disk_sha}",
            reg.port
        ))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&blob.stdout),
        "404",
        "a partial blob is served"
    );

    // The next push completes, and the pull is byte-identical.
    let out = push(&img, &reference);
    assert!(out.status.success(), "{}", text(&out));
    let back = tmp.path().join("back");
    let out = pull(&reference, &back);
    assert!(out.status.success(), "{}", text(&out));
    same_files(&img, &back, FILES);

    // Killed and back a moment later: the same push retries the blob and completes.
    let reference = reg.reference("fleet/big:2");
    let img2 = image_dir(&tmp.path().join("img2"), 160, 17);
    let child = push_and_kill(&mut reg, &img2, &reference);
    std::thread::sleep(Duration::from_millis(1500));
    reg.spawn();
    let out = child.wait_with_output().expect("push");
    assert!(out.status.success(), "no retry: {}", text(&out));
    assert!(text(&out).contains("retrying"), "{}", text(&out));
    let back = tmp.path().join("back2");
    let out = pull(&reference, &back);
    assert!(out.status.success(), "{}", text(&out));
    same_files(&img2, &back, FILES);
}
