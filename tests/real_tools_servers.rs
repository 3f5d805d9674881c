//! The bastion and web profiles (issue 21) with the real tools: sshd's own
//! evaluation of the jump group's Match block, the PAM stack against Debian's,
//! and the web server's nginx started from the rendered nginx.conf, asked over
//! HTTPS and HTTP by curl. (sshd -t, iptables-restore --test and
//! systemd-analyze verify of both profiles are in real_tools_system.rs, which
//! checks every server profile.)
use crate::common;
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

struct Built {
    _dir: tempfile::TempDir,
    out: PathBuf,
}

impl Built {
    fn path(&self, rel: &str) -> PathBuf {
        self.out.join("overlay").join(rel)
    }
    fn file(&self, rel: &str) -> String {
        let p = self.path(rel);
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{} not in the overlay: {e}", p.display()))
    }
}

/// profiles/BASE plus `extra` profile text.
fn build(base: &str, extra: &str) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let base = repo().join("profiles").join(base);
    let profile = dir.path().join("variant.toml");
    let body = format!("[profile]\nimports = [\"{}\"]\n\n{extra}", base.display());
    std::fs::write(&profile, body).unwrap();
    let out = dir.path().join("out");
    let modules = repo().join("modules");
    let o = hardroot(
        dir.path(),
        &[
            "build",
            &profile.display().to_string(),
            "--modules",
            &modules.display().to_string(),
            "-o",
            &out.display().to_string(),
        ],
    );
    assert!(
        o.status.success(),
        "hardroot build failed:\n{}",
        text(&o.stderr)
    );
    Built { _dir: dir, out }
}

// ---- bastion ---------------------------------------------------------------------

/// sshd -T for a connection by `user` (group membership is read from this
/// host's /etc/group).
fn sshd_for(config: &Path, key: &Path, user: &str) -> BTreeMap<String, String> {
    sshd_effective_for(
        config,
        key,
        &format!("user={user},host=client.example,addr=203.0.113.7"),
    )
}

#[test]
fn bastion_lets_only_the_jump_group_forward_and_only_to_ssh_ports() {
    need_tool("sshd", "openssh-server");
    std::fs::create_dir_all("/run/sshd").expect("sshd -T needs /run/sshd (run as root)");
    // The jump group is root's group here: root is a member on every host,
    // nobody is not.
    let b = build("bastion.toml", "[force.jump_host]\ngroup = \"root\"\n");
    let tmp = tempfile::tempdir().unwrap();
    let key = host_key(tmp.path());
    let config = b.path("etc/ssh/sshd_config");
    run_ok(
        Command::new("bash")
            .arg("-n")
            .arg(b.path("usr/lib/hardroot/jump-users")),
    );
    let o = sshd_test(&config, &key);
    assert!(
        o.status.success(),
        "sshd -t refused {}:\n{}",
        config.display(),
        text(&o.stderr)
    );

    let member = sshd_for(&config, &key, "root");
    assert_eq!(member["disableforwarding"], "no", "{member:?}");
    assert_eq!(member["allowtcpforwarding"], "local", "{member:?}");
    assert_eq!(member["permitopen"], "*:22", "{member:?}");
    for (k, v) in [
        ("allowagentforwarding", "no"),
        ("x11forwarding", "no"),
        ("permittunnel", "no"),
        ("allowstreamlocalforwarding", "no"),
        ("gatewayports", "no"),
    ] {
        assert_eq!(member[k], v, "{k} for a jump group member");
    }
    let other = sshd_for(&config, &key, "nobody");
    assert_eq!(other["disableforwarding"], "yes", "{other:?}");
    assert_eq!(other["allowtcpforwarding"], "no", "{other:?}");
    // Users' keys are root's files; the bastion's users may log in.
    assert_eq!(
        other["authorizedkeysfile"],
        ".ssh/authorized_keys /etc/ssh/authorized_keys/%u"
    );
    assert_eq!(
        other["allowgroups"], "root bastion root",
        "the jump group (root here), the users' group, the profile's root"
    );
    assert_eq!(other["passwordauthentication"], "no");
}

#[test]
fn bastion_refuses_forwarding_settings_that_contradict_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p.toml");
    std::fs::write(
        &profile,
        format!(
            "[profile]\nimports = [\"{}\"]\n\n[ssh]\nallow_tcp_forwarding = true\n",
            repo().join("profiles/bastion.toml").display()
        ),
    )
    .unwrap();
    let o = hardroot(dir.path(), &["check", &profile.display().to_string()]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("ssh.forwarding_groups and ssh.allow_tcp_forwarding are both set"),
        "{err}"
    );
}

#[test]
fn bastion_pam_is_debians_sshd_stack_plus_the_tty_audit() {
    let host = std::fs::read_to_string("/etc/pam.d/sshd")
        .expect("/etc/pam.d/sshd of Debian 12's openssh-server (scripts/deps.sh installs it)");
    let pam = Path::new("/lib/x86_64-linux-gnu/security/pam_tty_audit.so");
    assert!(pam.exists(), "{} missing: libpam-modules", pam.display());
    let tty = "session required pam_tty_audit.so disable=* enable=*";

    let b = build("bastion.toml", "");
    let mut rendered = directives(&b.file("etc/pam.d/sshd"));
    let at = rendered
        .iter()
        .position(|l| l == tty)
        .unwrap_or_else(|| panic!("no `{tty}`: {rendered:#?}"));
    // After pam_loginuid, which sets the audit session the records belong to.
    assert_eq!(rendered[at - 1], "session required pam_loginuid.so");
    rendered.remove(at);
    assert_eq!(
        rendered,
        directives(&host),
        "the rest must be Debian's stack, unchanged"
    );

    let off = build(
        "bastion.toml",
        "[force.jump_host]\nrecord_sessions = false\n",
    );
    assert_eq!(directives(&off.file("etc/pam.d/sshd")), directives(&host));
}

// ---- web ---------------------------------------------------------------------------

struct Nginx(Child);
impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// curl against the test's nginx: `-s` plus `args`, stdout.
fn curl(args: &[&str]) -> String {
    run_ok(
        Command::new("curl")
            .args(["-s", "--max-time", "10"])
            .args(args),
    )
}

#[test]
fn web_nginx_serves_the_site_with_hsts_csp_redirect_and_rate_limit() {
    need_tool("nginx", "nginx");
    need_tool("curl", "curl");
    let b = build("web.toml", "");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (http, https) = (free_port(), free_port());
    // The rendered file with image paths pointing into the scratch folder and
    // the ports on loopback; everything else as the image has it.
    let conf = nginx_conf_on_host(&b.file("etc/nginx/nginx.conf"), &b.out.join("overlay"), d)
        .replace(
            "/var/www/site",
            &b.path("var/www/site").display().to_string(),
        )
        .replace(
            "listen 80 default_server;",
            &format!("listen 127.0.0.1:{http} default_server;"),
        )
        .replace("listen [::]:80 default_server;", "")
        .replace(
            "listen 443 ssl http2 default_server;",
            &format!("listen 127.0.0.1:{https} ssl http2 default_server;"),
        )
        .replace("listen [::]:443 ssl http2 default_server;", "");
    let path = d.join("nginx.conf");
    std::fs::write(&path, &conf).unwrap();
    run_ok(Command::new("nginx").arg("-t").arg("-c").arg(&path));
    let _nginx = Nginx(
        Command::new("nginx")
            .args(["-g", "daemon off;", "-c"])
            .arg(&path)
            .stdout(Stdio::null())
            .spawn()
            .expect("nginx"),
    );
    let resolve = format!("example.org:{https}:127.0.0.1");
    let url = format!("https://example.org:{https}/");
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", https)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        up,
        "nginx did not listen:\n{}",
        std::fs::read_to_string(d.join("error.log")).unwrap_or_default()
    );

    // The site, with the policy headers.
    let head = curl(&[
        "-k",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "--resolve",
        &resolve,
        &url,
    ]);
    let hdr = head.to_ascii_lowercase();
    assert!(hdr.starts_with("http/2 200"), "{head}");
    assert!(
        hdr.contains("strict-transport-security: max-age=63072000; includesubdomains; preload"),
        "{head}"
    );
    assert!(
        hdr.contains(
            "content-security-policy: default-src 'none'; img-src 'self'; style-src 'self'"
        ),
        "{head}"
    );
    let page = curl(&["-k", "--resolve", &resolve, &url]);
    assert!(page.contains("<h1>It works</h1>"), "{page}");
    let css = curl(&[
        "-k",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{content_type}",
        "--resolve",
        &resolve,
        &format!("{url}style.css"),
    ]);
    assert_eq!(css, "200 text/css", "the stylesheet the CSP allows");
    let missing = curl(&[
        "-k",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--resolve",
        &resolve,
        &format!("{url}nothing"),
    ]);
    assert_eq!(missing, "404");

    // Port 80 only redirects.
    let redirect = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        "-H",
        "Host: example.org",
        &format!("http://127.0.0.1:{http}/a?b"),
    ]);
    assert_eq!(redirect, "301 https://example.org/a?b");

    // Past rate and burst (10r/s, 20): 429, with the headers still on.
    let mut args: Vec<String> = [
        "-k",
        "--parallel",
        "--parallel-max",
        "50",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}\\n",
        "--resolve",
        &resolve,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(std::iter::repeat_n(url.clone(), 80));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let codes = curl(&args);
    let ok = codes.lines().filter(|c| *c == "200").count();
    let limited = codes.lines().filter(|c| *c == "429").count();
    assert_eq!(ok + limited, 80, "{codes}");
    // The requests above used some of the burst already.
    assert!((10..40).contains(&ok), "about the burst gets through: {ok}");
    assert!(limited >= 40, "the rest are refused: {limited}");
}
