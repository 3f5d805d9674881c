//! Helpers shared by the integration tests: run the real binary, hash files.
#![allow(dead_code)]
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hardroot"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    repo().join("tests/fixtures")
}

/// Runs `hardroot ARGS` in `cwd` and returns its output.
pub fn hardroot(cwd: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output()
        .expect("run hardroot")
}

pub fn sha256_file(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// A diagnostic's words: miette wraps lines and draws a `│` margin, so
/// tests compare messages one space apart.
#[allow(dead_code)]
pub fn words(o: &[u8]) -> String {
    text(o)
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The example JSON under the heading of docs/json.md that contains `heading`.
pub fn json_doc_example(heading: &str) -> serde_json::Value {
    let doc = std::fs::read_to_string(repo().join("docs/json.md")).expect("docs/json.md");
    let section = doc
        .split("\n## ")
        .find(|s| s.lines().next().is_some_and(|h| h.contains(heading)))
        .unwrap_or_else(|| panic!("docs/json.md has no section `{heading}`"));
    let block = section
        .split("```json\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .unwrap_or_else(|| panic!("docs/json.md `{heading}` has no json block"));
    serde_json::from_str(block)
        .unwrap_or_else(|e| panic!("docs/json.md `{heading}`: example is not JSON: {e}"))
}

/// Fails unless `real` has the documented shape: the same keys in every
/// object, the same JSON type for every value. `null` on either side matches
/// anything (nullable keys); arrays compare their first elements.
pub fn assert_json_shape(doc: &serde_json::Value, real: &serde_json::Value, at: &str) {
    use serde_json::Value::*;
    match (doc, real) {
        (Null, _) | (_, Null) => {}
        (Object(d), Object(r)) => {
            let dk: Vec<&str> = d.keys().map(|k| k.as_str()).collect();
            let rk: Vec<&str> = r.keys().map(|k| k.as_str()).collect();
            assert_eq!(
                dk, rk,
                "keys of {at} differ between docs/json.md and the output"
            );
            for (k, v) in d {
                assert_json_shape(v, &r[k], &format!("{at}.{k}"));
            }
        }
        (Array(d), Array(r)) => {
            if let (Some(d0), Some(r0)) = (d.first(), r.first()) {
                assert_json_shape(d0, r0, &format!("{at}[0]"));
            }
        }
        (Bool(_), Bool(_)) | (Number(_), Number(_)) | (String(_), String(_)) => {}
        _ => panic!("{at}: docs/json.md shows {doc}, the output has {real}"),
    }
}

/// A small xorshift generator for random kill times, without a dependency;
/// tests print the seed so that a failing sequence can be replayed.
pub struct Rng(pub u64);

impl Rng {
    /// A fresh odd (never zero) seed from the clock.
    pub fn seed_from_clock() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// `openssl req` for a throwaway one-day P-384 certificate for example.org
/// (what the TLS module's first-boot fallback makes), for real-tool checks.
pub fn self_signed_cmd(key: &Path, cert: &Path) -> Command {
    let mut c = Command::new("openssl");
    c.args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=example.org",
        "-keyout",
    ])
    .arg(key)
    .arg("-out")
    .arg(cert);
    c
}

/// Fails with the package to install when a tool is missing.
pub fn need_tool(tool: &str, package: &str) {
    let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists());
    assert!(
        found,
        "{tool} is not installed: apt-get install {package} (scripts/deps.sh)"
    );
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs and requires success; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// A scratch root for `systemd-analyze verify --root`: the overlay, plus the
/// host's packaged units (targets, and the units ours order against), plus a
/// stub for each of `stubs` the host does not have.
pub fn unit_root(overlay: &Path, stubs: &[&str]) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    let r = root.path();
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", overlay.display()))
            .arg(r),
    );
    std::fs::create_dir_all(r.join("usr/lib/systemd")).expect("mkdir");
    run_ok(
        Command::new("cp")
            .args(["-a", "/usr/lib/systemd/system"])
            .arg(r.join("usr/lib/systemd/")),
    );
    for packaged in stubs {
        let p = r.join("usr/lib/systemd/system").join(packaged);
        if !p.exists() {
            std::fs::write(
                &p,
                "[Unit]\nDescription=stub of a packaged unit\n[Service]\nExecStart=/bin/true\n",
            )
            .expect("stub");
        }
    }
    root
}

/// A throwaway Ed25519 host key in `dir`, made by the test (never stored).
#[allow(dead_code)]
pub fn host_key(dir: &Path) -> PathBuf {
    need_tool("ssh-keygen", "openssh-client");
    let key = dir.join("ssh_host_ed25519_key");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key),
    );
    key
}

/// `sshd -t`: sshd itself accepts the rendered config (or says why not).
#[allow(dead_code)]
pub fn sshd_test(config: &Path, key: &Path) -> Output {
    run(Command::new("/usr/sbin/sshd")
        .arg("-t")
        .arg("-f")
        .arg(config)
        .arg("-h")
        .arg(key))
}

/// `sshd -T` of `config` for a connection described by `conn` (sshd's -C:
/// "user=root,host=client.example,addr=198.51.100.7"): what sshd itself
/// decides, Match blocks included. A directive sshd prints once per value
/// (allowgroups, allowusers) has its values joined with spaces.
#[allow(dead_code)]
pub fn sshd_effective_for(
    config: &Path,
    key: &Path,
    conn: &str,
) -> std::collections::BTreeMap<String, String> {
    let out = run_ok(
        Command::new("/usr/sbin/sshd")
            .arg("-T")
            .arg("-f")
            .arg(config)
            .arg("-h")
            .arg(key)
            .args(["-C", conn]),
    );
    let mut eff = std::collections::BTreeMap::<String, String>::new();
    for (k, v) in out.lines().filter_map(|l| l.split_once(' ')) {
        eff.entry(k.to_string())
            .and_modify(|old| *old = format!("{old} {v}"))
            .or_insert_with(|| v.to_string());
    }
    eff
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
#[allow(dead_code)]
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().map(|a| a.port()).unwrap_or(0)
}

/// A rendered nginx.conf with the image's paths pointing into `dir` (a
/// throwaway certificate made there, the overlay's DH group, logs and pid in
/// `dir`), so that the host's nginx can test or run it.
#[allow(dead_code)]
pub fn nginx_conf_on_host(conf: &str, overlay: &Path, dir: &Path) -> String {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    run_ok(&mut self_signed_cmd(&key, &cert));
    conf.replace(
        "/etc/hardroot/tls/fullchain.pem",
        &cert.display().to_string(),
    )
    .replace("/etc/hardroot/tls/privkey.pem", &key.display().to_string())
    .replace(
        "/etc/hardroot/tls/ffdhe4096.pem",
        &overlay
            .join("etc/hardroot/tls/ffdhe4096.pem")
            .display()
            .to_string(),
    )
    .replace("/var/log/nginx/", &format!("{}/", dir.display()))
    .replace(
        "/run/nginx.pid",
        &dir.join("nginx.pid").display().to_string(),
    )
}

/// Why this machine cannot run VM tests (not root, no /dev/net/tun), if so.
#[allow(dead_code)]
pub fn cannot_run_vm_tests() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (the test network needs network namespaces and taps)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing (QEMU's tap device needs it)".into());
    }
    None
}

/// Lines of a config file without comments and blank lines, whitespace squeezed.
pub fn directives(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            l.split('#')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|l| !l.is_empty())
        .collect()
}
