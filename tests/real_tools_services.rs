//! The XMPP profile's service modules (tls, nginx, ejabberd, postgresql),
//! checked with the real tools: `hardroot build`, then `nginx -t`, a YAML
//! parser, openssl, and — in a network namespace made by the test — a real
//! PostgreSQL and ejabberd started from the rendered files.
//!
//! Golden files: tests/golden/<module>/<path in the image>. Regenerate with
//! `HARDROOT_BLESS=1 cargo test --test suite -- real_tools_services::golden`.
use crate::common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const MINE: [&str; 4] = ["tls", "nginx", "ejabberd", "postgresql"];

// ---- building ------------------------------------------------------------------

struct Built {
    _dir: tempfile::TempDir,
    out: PathBuf,
}

impl Built {
    fn file(&self, rel: &str) -> String {
        let p = self.out.join("overlay").join(rel);
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{} not in the overlay: {e}", p.display()))
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.out.join("overlay").join(rel)
    }
    fn json(&self, name: &str) -> Value {
        let text =
            std::fs::read_to_string(self.out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}

fn build(profile: &str) -> Built {
    build_path(
        &repo().join("profiles").join(profile),
        tempfile::tempdir().unwrap(),
    )
}

/// xmpp-server.toml plus `extra` profile text, built from a temp profile.
fn build_variant(extra: &str) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let base = repo().join("profiles/xmpp-server.toml");
    let text = format!("[profile]\nimports = [\"{}\"]\n\n{extra}", base.display());
    let profile = dir.path().join("variant.toml");
    std::fs::write(&profile, text).unwrap();
    build_path(&profile, dir)
}

fn build_path(profile: &Path, dir: tempfile::TempDir) -> Built {
    let (o, out) = hardroot_build(profile, dir.path());
    assert!(
        o.status.success(),
        "hardroot build failed:\n{}",
        text(&o.stderr)
    );
    Built { _dir: dir, out }
}

/// `hardroot build PROFILE` with the repository's modules into DIR/out.
fn hardroot_build(profile: &Path, dir: &Path) -> (Output, PathBuf) {
    let out = dir.join("out");
    let mut args = vec!["build".to_string(), profile.display().to_string()];
    args.extend([
        "--modules".to_string(),
        repo().join("modules").display().to_string(),
    ]);
    args.extend(["-o".to_string(), out.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (hardroot(dir, &args), out)
}

// ---- small tools -----------------------------------------------------------------

fn run(cmd: &mut Command) -> Output {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (scripts/deps.sh installs the tools)"));
    assert!(
        o.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    o
}

/// YAML → JSON with python3-yaml (safe_load: no tags, no code).
fn yaml(text: &str) -> Value {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (with python3-yaml) is needed");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "YAML does not parse: {}",
        common::text(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn has(lines: &[String], wanted: &str) -> bool {
    lines.iter().any(|l| l == wanted)
}

fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    run(&mut self_signed_cmd(&key, &cert));
    (cert, key)
}

// ---- nginx -------------------------------------------------------------------------

/// The rendered nginx.conf with image paths pointing into `dir`.
fn nginx_conf_for_host(b: &Built, dir: &Path) -> PathBuf {
    let conf = nginx_conf_on_host(&b.file("etc/nginx/nginx.conf"), &b.out.join("overlay"), dir);
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

#[test]
fn nginx_t_accepts_the_rendered_config() {
    let b = build("xmpp-server.toml");
    let dir = tempfile::tempdir().unwrap();
    let conf = nginx_conf_for_host(&b, dir.path());
    let o = run(Command::new("nginx").arg("-t").arg("-c").arg(&conf));
    assert!(
        text(&o.stderr).contains("test is successful"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn nginx_has_the_guides_tls_headers_redirect_and_rate_limit() {
    let b = build("xmpp-server.toml");
    let conf = b.file("etc/nginx/nginx.conf");
    let d = directives(&conf);
    for want in [
        "server_tokens off;",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "ssl_ciphers ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256;",
        "ssl_prefer_server_ciphers off;",
        "ssl_ecdh_curve secp384r1;",
        "ssl_dhparam /etc/hardroot/tls/ffdhe4096.pem;",
        "ssl_session_cache shared:SSL:10m;",
        "ssl_session_timeout 1d;",
        "ssl_session_tickets off;",
        "add_header Strict-Transport-Security \"max-age=63072000; includeSubDomains\" always;",
        "add_header X-Content-Type-Options \"nosniff\" always;",
        "add_header X-Frame-Options \"SAMEORIGIN\" always;",
        "add_header Referrer-Policy \"no-referrer\" always;",
        "add_header Permissions-Policy \"interest-cohort=()\" always;",
        "listen 80 default_server;",
        "listen [::]:80 default_server;",
        "listen 443 ssl http2 default_server;",
        "listen [::]:443 ssl http2 default_server;",
        "server_name _;",
        "return 301 https://$host$request_uri;",
        "limit_req_zone $binary_remote_addr zone=invites:10m rate=20r/m;",
        "location /invites/ {",
        "limit_req zone=invites burst=20 nodelay;",
        "limit_req_status 429;",
        "proxy_pass http://127.0.0.1:8444;",
        "ssl_certificate /etc/hardroot/tls/fullchain.pem;",
        "ssl_certificate_key /etc/hardroot/tls/privkey.pem;",
    ] {
        assert!(has(&d, want), "nginx.conf lacks `{want}`:\n{conf}");
    }
    assert!(d.iter().any(|l| {
        l.starts_with("add_header Content-Security-Policy \"default-src 'self';")
            && l.ends_with("always;")
    }));
    // Every header is sent on errors too; the deprecated one is absent.
    assert!(
        d.iter()
            .filter(|l| l.starts_with("add_header"))
            .all(|l| l.ends_with(" always;"))
    );
    assert!(!conf.contains("X-XSS-Protection"));
    // Debian's default site (and anything else dropped into conf.d) is never loaded.
    assert!(!conf.contains("sites-enabled") && !conf.contains("conf.d"));
    // Backends only on loopback (HTTP and streams).
    for l in d.iter().filter(|l| l.starts_with("proxy_pass")) {
        let to = l
            .trim_start_matches("proxy_pass ")
            .trim_start_matches("http://");
        assert!(
            to.starts_with("127.0.0.1:") || to.starts_with("[::1]:"),
            "{l}"
        );
    }
    // TURN over TLS: a stream server with the same policy lines as HTTPS
    // (its own session cache), to ejabberd on loopback with the PROXY protocol.
    let stream = conf
        .split_once("\nstream {")
        .map(|(_, s)| directives(s))
        .unwrap_or_else(|| panic!("nginx.conf has no stream block:\n{conf}"));
    for want in [
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "ssl_ciphers ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256;",
        "ssl_conf_command Ciphersuites TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256;",
        "ssl_ecdh_curve secp384r1;",
        "ssl_session_cache shared:STREAM_SSL:10m;",
        "ssl_session_tickets off;",
        "ssl_certificate /etc/hardroot/tls/fullchain.pem;",
        "listen 5349 ssl;",
        "listen [::]:5349 ssl;",
        "proxy_pass 127.0.0.1:5350;",
        "proxy_protocol on;",
    ] {
        assert!(
            has(&stream, want),
            "nginx.conf's stream lacks `{want}`:\n{conf}"
        );
    }
}

// ---- ejabberd ------------------------------------------------------------------------

fn listener(yml: &Value, port: u64) -> &Value {
    let all = yml["listen"].as_array().expect("listen is a list");
    let found: Vec<&Value> = all.iter().filter(|l| l["port"] == port).collect();
    assert!(!found.is_empty(), "no listener on port {port}");
    found[0]
}

#[test]
fn ejabberd_yml_has_every_setting_of_the_guide() {
    let b = build("xmpp-server.toml");
    let y = yaml(&b.file("etc/ejabberd/ejabberd.yml"));

    assert_eq!(y["hosts"], serde_json::json!(["example.org"]));
    assert_eq!(y["s2s_use_starttls"], "required");
    assert_eq!(y["auth_password_format"], "scram");
    assert_eq!(
        y["disable_sasl_mechanisms"],
        serde_json::json!(["digest-md5", "X-OAUTH2"])
    );
    assert_eq!(y["modules"]["mod_fail2ban"]["c2s_auth_ban_lifetime"], "6h");
    assert_eq!(y["modules"]["mod_fail2ban"]["c2s_max_auth_failures"], 5);
    assert!(
        y["modules"].get("mod_mqtt").is_none(),
        "mod_mqtt must be off"
    );
    assert_eq!(
        y["certfiles"],
        serde_json::json!(["/etc/hardroot/tls/combined.pem"])
    );
    assert_eq!(y["acme"]["auto"], false);

    let c2s = listener(&y, 5222);
    assert_eq!(
        (c2s["module"].as_str(), c2s["starttls_required"].as_bool()),
        (Some("ejabberd_c2s"), Some(true))
    );
    let c2s_tls = listener(&y, 5223);
    assert_eq!(
        (c2s_tls["module"].as_str(), c2s_tls["tls"].as_bool()),
        (Some("ejabberd_c2s"), Some(true))
    );
    let s2s = listener(&y, 5269);
    assert_eq!(s2s["module"], "ejabberd_s2s_in");
    assert_eq!(
        s2s["protocol_options"],
        serde_json::json!(["no_sslv2", "no_sslv3", "no_tlsv1", "no_tlsv1_1"])
    );
    let s2s_tls = listener(&y, 5270);
    assert_eq!(
        (s2s_tls["module"].as_str(), s2s_tls["tls"].as_bool()),
        (Some("ejabberd_s2s_in"), Some(true))
    );
    let admin = listener(&y, 6443);
    assert_eq!(
        (admin["ip"].as_str(), admin["tls"].as_bool()),
        (Some("172.16.0.10"), Some(true))
    );
    assert_eq!(admin["request_handlers"]["/admin"], "ejabberd_web_admin");
    let backend = listener(&y, 8444);
    assert_eq!(backend["ip"], "127.0.0.1");
    assert_eq!(listener(&y, 5443)["tls"], true);
    assert_eq!(listener(&y, 3478)["transport"], "udp");
    assert_eq!(listener(&y, 5349)["use_turn"], true);
    // TURN over TLS is nginx's: ejabberd has only plain TURN over TCP, on
    // loopback, reading the PROXY header nginx sends first.
    let turn_tcp: Vec<&Value> = y["listen"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["module"] == "ejabberd_stun" && l["transport"] == "tcp")
        .collect();
    assert_eq!(turn_tcp.len(), 1, "{turn_tcp:?}");
    let t = turn_tcp[0];
    assert_eq!(
        (
            &t["port"],
            &t["ip"],
            &t["use_proxy_protocol"],
            &t["use_turn"]
        ),
        (
            &serde_json::json!(5350),
            &serde_json::json!("127.0.0.1"),
            &serde_json::json!(true),
            &serde_json::json!(true)
        )
    );
    assert!(t.get("tls").is_none() && t.get("certfile").is_none(), "{t}");
    assert!(
        t["turn_blacklist"]
            .as_array()
            .is_some_and(|b| b.contains(&serde_json::json!("127.0.0.0/8"))),
        "{t}"
    );
    // XEP-0215 lists its services itself: found from the listeners, the
    // loopback one would be announced under the public address.
    let disco = &y["modules"]["mod_stun_disco"];
    assert_eq!(disco["offer_local_services"], false);
    assert!(
        disco["services"]
            .as_array()
            .is_some_and(|s| s.iter().all(|s| s["port"] != 5350)),
        "{disco}"
    );

    let ports: Vec<u64> = y["listen"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["port"].as_u64())
        .collect();
    assert!(
        !ports.contains(&5280) && !ports.contains(&1883),
        "5280 and 1883 must not listen: {ports:?}"
    );

    // Storage: PostgreSQL on loopback; the password is never in the file.
    assert_eq!(
        (y["default_db"].as_str(), y["sql_type"].as_str()),
        (Some("sql"), Some("pgsql"))
    );
    assert_eq!(
        (y["sql_server"].as_str(), y["auth_method"].as_str()),
        (Some("localhost"), Some("sql"))
    );
    assert!(
        y.get("sql_password").is_none(),
        "sql_password must not be in the image"
    );
    let inc = &y["include_config_file"]["/etc/ejabberd/sql-password.yml"];
    assert_eq!(inc["allow_only"], serde_json::json!(["sql_password"]));
}

#[test]
fn ejabberd_registration_is_off_for_the_server_and_on_for_the_test() {
    let rule = |p: &str| {
        yaml(&build(p).file("etc/ejabberd/ejabberd.yml"))["access_rules"]["register"].clone()
    };
    assert_eq!(rule("xmpp-server.toml"), serde_json::json!({"deny": "all"}));
    assert_eq!(
        rule("xmpp-test.toml"),
        serde_json::json!({"deny": "admin", "allow": "all"})
    );
    // Rules apply in order: admin names are refused before anyone is allowed.
    let d = directives(&build("xmpp-test.toml").file("etc/ejabberd/ejabberd.yml"));
    assert!(
        d.windows(3)
            .any(|w| w == ["register:", "deny: admin", "allow: all"]),
        "{d:?}"
    );
}

#[test]
fn ejabberdctl_cfg_keeps_erlang_on_loopback_without_epmd() {
    let b = build("xmpp-server.toml");
    let cfg: BTreeMap<String, String> = directives(&b.file("etc/default/ejabberd"))
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // Loopback as an Erlang term: INET_DIST_INTERFACE would make ejabberdctl
    // start an Erlang VM just to parse the address, before every start.
    let erl_options = cfg.get("ERL_OPTIONS").map(String::as_str).unwrap_or("");
    assert!(
        erl_options.contains("-kernel inet_dist_use_interface {127,0,0,1}"),
        "{erl_options}"
    );
    assert_eq!(cfg.get("INET_DIST_INTERFACE"), None);
    assert_eq!(cfg.get("ERL_DIST_PORT").map(String::as_str), Some("5210"));
    assert_eq!(
        cfg.get("ERL_EPMD_ADDRESS").map(String::as_str),
        Some("127.0.0.1")
    );

    // Debian's unit Requires=epmd.service: ours replaces it, and epmd is masked.
    let unit = b.file("etc/systemd/system/ejabberd.service");
    assert!(
        !directives(&unit).iter().any(|l| l.contains("epmd")),
        "{unit}"
    );
    let m = b.json("manifest.json");
    let masked: Vec<&str> = m["units"]["mask"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        masked.contains(&"epmd.service") && masked.contains(&"epmd.socket"),
        "{masked:?}"
    );
}

// ---- postgresql ------------------------------------------------------------------------

#[test]
fn postgresql_allows_only_scram_on_loopback_and_peer_for_postgres() {
    let b = build("xmpp-server.toml");
    let hba: Vec<Vec<String>> = directives(&b.file("etc/postgresql/15/main/pg_hba.conf"))
        .iter()
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect();
    let want: Vec<Vec<&str>> = vec![
        vec!["local", "all", "postgres", "peer"],
        vec!["host", "all", "all", "127.0.0.1/32", "scram-sha-256"],
        vec!["host", "all", "all", "::1/128", "scram-sha-256"],
    ];
    assert_eq!(hba, want);

    let conf = directives(&b.file("etc/postgresql/15/main/conf.d/50-hardroot.conf"));
    for want in [
        "listen_addresses = 'localhost'",
        "password_encryption = 'scram-sha-256'",
        "max_wal_senders = 0",
        // Durability (issue 20): an acknowledged commit survives a power cut.
        "fsync = on",
        "synchronous_commit = on",
        "full_page_writes = on",
        "wal_sync_method = fdatasync",
    ] {
        assert!(
            has(&conf, want),
            "50-hardroot.conf lacks `{want}`: {conf:?}"
        );
    }
}

// ---- tls and secrets ------------------------------------------------------------------------

#[test]
fn dh_group_is_rfc7919_ffdhe4096_and_no_private_key_is_in_the_overlay() {
    let b = build("xmpp-server.toml");
    let o = run(Command::new("openssl")
        .args(["dhparam", "-noout", "-text", "-in"])
        .arg(b.path("etc/hardroot/tls/ffdhe4096.pem")));
    assert!(
        text(&o.stdout).contains("GROUP: ffdhe4096"),
        "{}",
        text(&o.stdout)
    );

    for entry in walkdir::WalkDir::new(b.out.join("overlay")) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            let s = String::from_utf8_lossy(&bytes);
            assert!(
                !s.contains("PRIVATE KEY-----"),
                "{} holds a private key",
                entry.path().display()
            );
            assert!(
                !s.contains("sql_password:") || entry.path().ends_with("postgresql-roles"),
                "{}",
                entry.path().display()
            );
        }
    }
}

/// The command of a unit's `key` (e.g. "ExecStart="), continuation lines joined.
fn unit_command(unit: &str, key: &str) -> String {
    let joined = unit.replace("\\\n", " ");
    let line = joined
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in:\n{unit}"));
    line[key.len()..]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `certbot …` command of hardroot-acme.service.
fn certbot_command(unit: &str) -> String {
    unit_command(unit, "ExecStart=")
}

#[test]
fn acme_covers_the_domain_and_subdomains_with_p384_and_reloads_services() {
    let b = build("xmpp-server.toml");
    let cmd = certbot_command(&b.file("etc/systemd/system/hardroot-acme.service"));
    for wanted in [
        "/usr/bin/certbot certonly --non-interactive --agree-tos --keep-until-expiring",
        "--server https://acme-v02.api.letsencrypt.org/directory",
        "--webroot --webroot-path /var/lib/hardroot/acme",
        "--key-type ecdsa --elliptic-curve secp384r1",
        "--cert-name example.org -d example.org -d conference.example.org -d upload.example.org -d proxy.example.org -d pubsub.example.org --deploy-hook /usr/lib/hardroot/acme-deploy",
    ] {
        assert!(cmd.contains(wanted), "{wanted:?} missing from: {cmd}");
    }
    let hook = b.file("usr/lib/hardroot/acme-deploy");
    assert!(
        hook.contains("systemctl try-reload-or-restart nginx.service")
            && hook.contains("systemctl try-reload-or-restart ejabberd.service"),
        "{hook}"
    );
    // nginx serves the challenges from where certbot writes them.
    let nginx = b.file("etc/nginx/nginx.conf");
    assert!(
        nginx.contains(
            "location /.well-known/acme-challenge/ {\n            root /var/lib/hardroot/acme;"
        ),
        "{nginx}"
    );
    // Debian's own renewal timer is replaced by hardroot-acme.timer.
    assert_eq!(
        std::fs::read_link(b.path("etc/systemd/system/certbot.timer")).unwrap(),
        Path::new("/dev/null")
    );

    let t = build("xmpp-test.toml");
    let unit = t.file("etc/systemd/system/hardroot-acme.service");
    assert!(
        certbot_command(&unit).contains("--server https://192.168.77.20:14000/dir"),
        "{unit}"
    );
    assert!(
        unit.contains("Environment=REQUESTS_CA_BUNDLE=/etc/hardroot/tls/pebble-ca.pem"),
        "{unit}"
    );

    let unit = b.file("etc/systemd/system/hardroot-tls-selfsigned.service");
    assert!(
        unit.contains("ConditionPathExists=!/etc/hardroot/tls/fullchain.pem"),
        "{unit}"
    );
    assert!(
        unit.contains("Before=nginx.service ejabberd.service"),
        "{unit}"
    );
}

#[test]
fn first_boot_fallback_makes_a_p384_certificate_for_every_name() {
    let b = build("xmpp-server.toml");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let install = b
        .file("usr/lib/hardroot/tls-install")
        .replace("/etc/hardroot/tls/", &format!("{d}/"));
    let install_path = dir.path().join("tls-install");
    std::fs::write(&install_path, install).unwrap();
    let fallback = b.file("usr/lib/hardroot/tls-selfsigned").replace(
        "/usr/lib/hardroot/tls-install",
        &format!("sh {}", install_path.display()),
    );
    run(Command::new("sh").arg("-c").arg(fallback));

    let o = run(Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(dir.path().join("fullchain.pem")));
    let cert = text(&o.stdout);
    assert!(cert.contains("NIST CURVE: P-384"), "{cert}");
    for name in [
        "example.org",
        "conference.example.org",
        "upload.example.org",
        "proxy.example.org",
        "pubsub.example.org",
    ] {
        assert!(
            cert.contains(&format!("DNS:{name}")),
            "{name} missing:\n{cert}"
        );
    }
    let mode = |f: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        (
            mode("privkey.pem"),
            mode("fullchain.pem"),
            mode("combined.pem")
        ),
        (0o600, 0o644, 0o640)
    );
    let combined = std::fs::read_to_string(dir.path().join("combined.pem")).unwrap();
    assert!(combined.contains("BEGIN CERTIFICATE") && combined.contains("PRIVATE KEY"));

    // A key that does not belong to the chain is refused, and nothing changes.
    let other = tempfile::tempdir().unwrap();
    let (_, wrong_key) = self_signed(other.path());
    let o = Command::new("sh")
        .arg(&install_path)
        .arg(&wrong_key)
        .arg(dir.path().join("fullchain.pem"))
        .output()
        .unwrap();
    assert!(!o.status.success(), "a mismatched key was installed");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("combined.pem")).unwrap(),
        combined
    );
}

// ---- exposure table --------------------------------------------------------------------------

#[test]
fn listeners_follow_the_brief_port_table() {
    let b = build("xmpp-server.toml");
    let c = b.json("config.json");
    let rows = c["firewall"]["listeners"]
        .as_array()
        .expect("firewall.listeners");
    let row = |service: &str, port: u64, proto: &str| -> &Value {
        rows.iter()
            .find(|r| r["service"] == service && r["port"] == port && r["proto"] == proto)
            .unwrap_or_else(|| panic!("no row {service} {port}/{proto}"))
    };
    for (service, port, proto, exposure) in [
        ("nginx", 80, "tcp", "public"),
        ("nginx", 443, "tcp", "public"),
        ("ejabberd", 5222, "tcp", "public"),
        ("ejabberd", 5223, "tcp", "public"),
        ("ejabberd", 5269, "tcp", "public"),
        ("ejabberd", 5270, "tcp", "public"),
        ("ejabberd", 5443, "tcp", "public"),
        ("ejabberd", 3478, "udp", "public"),
        ("nginx", 5349, "tcp", "public"),
        ("ejabberd", 5349, "udp", "public"),
        ("ejabberd", 49152, "tcp", "public"),
        ("ejabberd", 49152, "udp", "public"),
        ("ejabberd", 6443, "tcp", "trusted"),
        ("ejabberd", 8444, "tcp", "localhost"),
        ("ejabberd", 5350, "tcp", "localhost"),
        ("ejabberd", 5210, "tcp", "localhost"),
        ("postgresql", 5432, "tcp", "localhost"),
        ("epmd", 4369, "tcp", "blocked"),
        ("mqtt", 1883, "tcp", "blocked"),
    ] {
        assert_eq!(
            row(service, port, proto)["exposure"],
            exposure,
            "{service} {port}/{proto}"
        );
    }
    assert_eq!(row("ejabberd", 49152, "udp")["port_end"], 65535);
    assert_eq!(
        row("ejabberd", 6443, "tcp")["bind"],
        serde_json::json!(["172.16.0.10"])
    );
    assert_eq!(
        row("postgresql", 5432, "tcp")["bind"],
        serde_json::json!(["127.0.0.1", "::1"])
    );
    assert!(!rows.iter().any(|r| r["port"] == 5280), "5280 is off");
}

// ---- golden files ------------------------------------------------------------------------------

#[test]
fn golden_files_of_the_service_modules() {
    let b = build("xmpp-server.toml");
    let m = b.json("manifest.json");
    let bless = std::env::var_os("HARDROOT_BLESS").is_some();
    let mut checked = 0;
    for e in m["entries"].as_array().unwrap() {
        let module = e["module"].as_str().unwrap_or("");
        if e["type"] != "file" || !MINE.contains(&module) {
            continue;
        }
        let rel = e["path"].as_str().unwrap();
        let golden = repo().join("tests/golden").join(module).join(rel);
        let now = b.file(rel);
        if bless {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &now).unwrap();
        } else {
            let want = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
                panic!(
                    "no golden file {} (HARDROOT_BLESS=1 makes it)",
                    golden.display()
                )
            });
            assert!(
                want == now,
                "{rel} differs from {}; if intended, rerun with HARDROOT_BLESS=1",
                golden.display()
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 15,
        "only {checked} files of the service modules were rendered"
    );
}

// ---- live: PostgreSQL, ejabberd and nginx from the rendered files ------------------------------

/// Runs in a network namespace of its own (`unshare -n`): loopback plus the
/// internal address on lo, so nothing here can reach or disturb the host's
/// network. The rendered files are used as they are, with image paths moved
/// into $W. Results go to $W/results for the Rust side to judge.
const LIVE: &str = r#"
set -eu
O=$OVERLAY
R=$W/results
mkdir -p $R $W/pg $W/pglog $W/sock $W/etc $W/tls $W/ej/conf $W/ej/spool $W/ej/log $W/ej/run $W/nginx
chown postgres $W/pg $W/pglog $W/sock
PGBIN=/usr/lib/postgresql/15/bin

cleanup() {
    nginx -c $W/nginx/nginx.conf -s stop 2>/dev/null || true
    [ -f $W/ejctl ] && sh $W/ejctl stop >/dev/null 2>&1 && sh $W/ejctl stopped >/dev/null 2>&1 || true
    runuser -u postgres -- $PGBIN/pg_ctl -D $W/pg -m fast -w stop >/dev/null 2>&1 || true
    # By its own pid file only, should `ejabberdctl stop` not have worked.
    [ -f $W/ej/run/ejabberd.pid ] && kill "$(cat $W/ej/run/ejabberd.pid)" 2>/dev/null || true
}
trap cleanup EXIT

ip link set lo up
ip addr add $INTERNAL/32 dev lo
# The VM test's addresses, all on lo: the server's v6, and a TURN client (.30)
# and its peer (.20), which the relay must not take for the server itself.
for a in fd77::10/128 192.168.77.20/32 192.168.77.30/32 fd77::20/128 fd77::30/128; do ip addr add $a dev lo; done

# PostgreSQL: a throwaway cluster with the rendered conf.d file and pg_hba.conf.
runuser -u postgres -- $PGBIN/initdb -D $W/pg -A peer >/dev/null
cp $O/etc/postgresql/15/main/pg_hba.conf $O/etc/postgresql/15/main/conf.d/50-hardroot.conf $W/etc/
chown postgres $W/etc/pg_hba.conf $W/etc/50-hardroot.conf
cat >> $W/pg/postgresql.conf <<CONF
unix_socket_directories = '$W/sock'
log_statement = 'all'
hba_file = '$W/etc/pg_hba.conf'
include '$W/etc/50-hardroot.conf'
CONF
runuser -u postgres -- $PGBIN/pg_ctl -D $W/pg -l $W/pglog/pg.log -w start >/dev/null

# First-boot roles, twice: the second run must change nothing.
sed "s#/etc/ejabberd/sql-password.yml#$W/etc/sql-password.yml#g" $O/usr/lib/hardroot/postgresql-roles > $W/roles
PGHOST=$W/sock sh $W/roles > $R/roles-1.txt
sha256sum < $W/etc/sql-password.yml > $R/pw-1.sha
stat -c '%U:%G %a' $W/etc/sql-password.yml > $R/pw-mode.txt
PGHOST=$W/sock sh $W/roles > $R/roles-2.txt
sha256sum < $W/etc/sql-password.yml > $R/pw-2.sha
psql_q() { runuser -u postgres -- psql -X -A -t -h $W/sock -d "$1" -c "$2"; }
psql_q postgres "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolcanlogin FROM pg_roles WHERE rolname = 'ejabberd'" > $R/role.txt
psql_q postgres "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'ejabberd'" > $R/db-owner.txt
PW=$(sed 's/^sql_password: "\(.*\)"$/\1/' $W/etc/sql-password.yml)
# The password must not reach the server log (log every statement to be sure).
grep -c -- "$PW" $W/pglog/pg.log > $R/pw-in-log.txt || true
PGPASSWORD=$PW psql -X -A -t -h 127.0.0.1 -U ejabberd -d ejabberd -c 'CREATE TABLE intruder (a int)' > /dev/null 2> $R/create.txt || echo refused >> $R/create.txt
PGPASSWORD=$PW psql -X -A -t -h 127.0.0.1 -U ejabberd -d postgres -c 'SELECT 1' > /dev/null 2> $R/other-db.txt || echo refused >> $R/other-db.txt

# TLS: the first-boot fallback, group ejabberd for the combined PEM.
sed "s#/etc/hardroot/tls/#$W/tls/#g" $O/usr/lib/hardroot/tls-install > $W/tls-install
sed "s#/usr/lib/hardroot/tls-install#sh $W/tls-install#" $O/usr/lib/hardroot/tls-selfsigned | sh > /dev/null
cp $O/etc/hardroot/tls/ffdhe4096.pem $W/tls/

# ejabberd with the rendered ejabberd.yml and ejabberdctl.cfg.
sed -e "s#/etc/hardroot/tls/#$W/tls/#g" -e "s#/etc/ejabberd/sql-password.yml#$W/etc/sql-password.yml#" \
    -e "s#/etc/ejabberd/turn-secret.yml#$W/etc/turn-secret.yml#" -e "s#/var/lib/ejabberd/upload#$W/ej/spool/upload#" $O/etc/ejabberd/ejabberd.yml > $W/ej/conf/ejabberd.yml
sed -e "s#/etc/ejabberd/ejabberd.yml#$W/ej/conf/ejabberd.yml#" -e "s#/run/ejabberd#$W/ej/run#" \
    -e "s#/etc/ejabberd/modules.d#$W/ej/conf/modules.d#" $O/etc/default/ejabberd > $W/ej/conf/ejabberdctl.cfg
cp /etc/ejabberd/inetrc $W/ej/conf/
# The TURN secret as the unit's ExecStartPre makes it; a second run keeps it.
sed "s#/etc/ejabberd/turn-secret.yml#$W/etc/turn-secret.yml#" $O/usr/lib/hardroot/ejabberd-turn-secret > $W/turn-secret
sh $W/turn-secret > $R/turn-secret-1.txt
sha256sum < $W/etc/turn-secret.yml > $R/turn-secret-1.sha
sh $W/turn-secret > $R/turn-secret-2.txt
sha256sum < $W/etc/turn-secret.yml > $R/turn-secret-2.sha
stat -c '%U:%G %a' $W/etc/turn-secret.yml > $R/turn-secret-mode.txt
chgrp ejabberd $W/etc/sql-password.yml
chown -R ejabberd:ejabberd $W/ej
echo "exec ejabberdctl --config-dir $W/ej/conf --ctl-config $W/ej/conf/ejabberdctl.cfg --spool $W/ej/spool --logs $W/ej/log \"\$@\"" > $W/ejctl
# The unit's OPENSSL_CONF (the tls module's policy for what ejabberd.yml cannot set).
cp $O/etc/hardroot/tls/openssl.cnf $W/tls/
conf=$(sed -n "s#^Environment=OPENSSL_CONF=/etc/hardroot/tls/#$W/tls/#p" $O/etc/systemd/system/ejabberd.service)
test -f "$conf"
# Only the node gets it: the probes below must speak as ordinary clients.
OPENSSL_CONF=$conf sh $W/ejctl start
sh $W/ejctl started
sh $W/ejctl register alice example.org alice-pw-1 > $R/register.txt
# The unit's ExecReload as systemd runs it: as ejabberd, HOME its home (the cookie);
# then the same with a function the node lacks, which must fail the reload.
reload() { runuser -u ejabberd -- env HOME=$(getent passwd ejabberd | cut -d: -f6) sh -c "$1" 2>&1 && echo reloaded || echo failed; }
reload "$RELOAD" > $R/reload.txt
reload "$(printf '%s' "$RELOAD" | sed 's/reload_config/no_such_command/')" > $R/reload-bad.txt
# A client over STARTTLS: admin names cannot be claimed, others register and log in (SCRAM).
xmpp() { python3 $W/xmppc.py 127.0.0.1 5222 example.org "$@" 2>&1 || true; }
xmpp register admin admin-pw-1 > $R/inband-admin.txt
xmpp register bob bob-pw-1 > $R/inband-bob.txt
xmpp login bob bob-pw-1 > $R/login-bob.txt
xmpp login bob wrong-pw > $R/login-wrong.txt
psql_q ejabberd "SELECT username, password IN ('alice-pw-1', 'bob-pw-1'), length(serverkey) > 0, length(salt) > 0 FROM users ORDER BY username" > $R/users.txt

# A renewal first, as the ACME deploy hook does it: a new certificate and the
# unit's reload. TURN over TLS below must serve the new one.
sed "s#/usr/lib/hardroot/tls-install#sh $W/tls-install#" $O/usr/lib/hardroot/tls-selfsigned | sh > /dev/null
reload "$RELOAD" > $R/reload-renewed.txt

# nginx with the rendered nginx.conf: in front of ejabberd's HTTP backend, and
# terminating TURN over TLS for ejabberd's loopback TURN listener (PROXY protocol).
sed -e "s#/etc/hardroot/tls/#$W/tls/#g" -e "s#/var/log/nginx/#$W/nginx/#g" -e "s#/run/nginx.pid#$W/nginx/nginx.pid#" \
    $O/etc/nginx/nginx.conf > $W/nginx/nginx.conf
nginx -c $W/nginx/nginx.conf

# Under load a listener can lag behind `ejabberdctl started` (seen: 5443
# still closed after three tries): wait until each one listens, and retry a
# failed handshake; a refusal stays a refusal.
for port in 5222 5223 5443 5349 5350; do
    i=0
    while [ $i -lt 60 ] && ! ss -Hltn "sport = :$port" | grep -q .; do sleep 1; i=$((i + 1)); done
done

# STUN and TURN with the VM test's own clients (vm-tests/xmpp-server): TURN
# credentials over XEP-0215, Binding requests v4 and v6 on both UDP ports,
# then relays (UDP v4, UDP v6, TLS v4) to a plain UDP peer.
T=$VMTESTS
printf 'alice alice-pw-1\nbob bob-pw-1\n' > $W/accounts
/usr/bin/python3 $T/xmpp-client.py --services $INTERNAL example.org $W/tls/fullchain.pem $W/accounts $W/services.json > $R/turn-services.txt 2>&1 || echo failed >> $R/turn-services.txt
for p in 3478 5349; do
    /usr/bin/python3 $T/turn.py --bind=192.168.77.30 binding $INTERNAL $p > $R/stun-v4-$p.json || true
    /usr/bin/python3 $T/turn.py --bind=fd77::30 binding fd77::10 $p > $R/stun-v6-$p.json || true
done
/usr/bin/python3 $T/turn.py peer 192.168.77.20,fd77::20 $W/peer.txt 18 120 > $R/turn-peer.json &
peer=$!
/usr/bin/python3 $T/turn.py --bind=192.168.77.30 relay $INTERNAL 3478 udp $W/services.json $W/peer.txt ipv4 49152 65535 > $R/turn-udp-v4.json || true
/usr/bin/python3 $T/turn.py --bind=fd77::30 relay fd77::10 3478 udp $W/services.json $W/peer.txt ipv6 49152 65535 > $R/turn-udp-v6.json || true
/usr/bin/python3 $T/turn.py --bind=192.168.77.30 relay $INTERNAL 5349 tls $W/services.json $W/peer.txt ipv4 49152 65535 example.org $W/tls/fullchain.pem > $R/turn-tls-v4.json || true
# Credentials the server did not hand out are refused.
sed 's/"password": "[^"]*"/"password": "d3JvbmcgcGFzc3dvcmQ="/' $W/services.json > $W/services-wrong.json
/usr/bin/python3 $T/turn.py --bind=192.168.77.30 relay $INTERNAL 3478 udp $W/services-wrong.json $W/peer.txt ipv4 49152 65535 > $R/turn-wrong.json || true
wait $peer || true

# TLS versions on c2s (STARTTLS and direct TLS).
# A failed handshake is retried; a refusal stays a refusal.
# The last failed handshake's output goes to tls-why.txt (the assertion shows it).
# Nothing is sent after the handshake: a line would make ejabberd_http close the
# connection without close_notify, and s_client then fails on a handshake that worked.
tls() { for i in 1 2 3; do timeout 20 openssl s_client "$@" < /dev/null > $R/tls-last.txt 2>&1 && { echo yes; return; }; { echo "== $*"; tail -n 5 $R/tls-last.txt; } >> $R/tls-why.txt; sleep 2; done; echo no; }
tls -starttls xmpp -xmpphost example.org -connect 127.0.0.1:5222 -tls1_2 > $R/c2s-tls12.txt
tls -starttls xmpp -xmpphost example.org -connect 127.0.0.1:5222 -tls1_3 > $R/c2s-tls13.txt
tls -starttls xmpp -xmpphost example.org -connect 127.0.0.1:5222 -tls1_1 -cipher DEFAULT@SECLEVEL=0 > $R/c2s-tls11.txt
tls -connect 127.0.0.1:5223 -tls1_3 > $R/c2s-direct-tls13.txt
# HTTPS (upload, BOSH): 1.2 with the ECDSA AEAD suites only.
tls -connect 127.0.0.1:5443 -tls1_2 > $R/https-tls12.txt
tls -connect 127.0.0.1:5443 -tls1_1 -cipher DEFAULT@SECLEVEL=0 > $R/https-tls11.txt
tls -connect 127.0.0.1:5443 -tls1_2 -cipher ECDHE-ECDSA-AES128-SHA > $R/https-cbc.txt
tls -starttls xmpp -xmpphost example.org -connect 127.0.0.1:5222 -tls1_2 -cipher ECDHE-ECDSA-AES128-SHA > $R/c2s-cbc.txt
# Key exchange groups (tls.groups) on c2s, HTTPS and TURN over TLS: only P-384.
for port in 5223 5443 5349; do
    tls -connect 127.0.0.1:$port -groups secp384r1 > $R/group-p384-$port.txt
    tls -connect 127.0.0.1:$port -groups X25519 > $R/group-x25519-$port.txt
done
tls -connect 127.0.0.1:5349 -tls1_2 > $R/turn-tls12.txt
tls -connect 127.0.0.1:5349 -tls1_1 -cipher DEFAULT@SECLEVEL=0 > $R/turn-tls11.txt
# TURN over TLS (nginx): the policy's suites, each alone, and no CBC suite.
tls -connect 127.0.0.1:5349 -tls1_2 -cipher ECDHE-ECDSA-AES128-SHA > $R/turn-cbc.txt
for c in $POLICY_CIPHERS; do echo "$c $(tls -connect 127.0.0.1:5349 -tls1_2 -cipher $c)"; done > $R/turn-ciphers.txt
for c in $POLICY_CIPHERSUITES; do echo "$c $(tls -connect 127.0.0.1:5349 -tls1_3 -ciphersuites $c)"; done > $R/turn-ciphersuites.txt

curl -s -o /dev/null -w '%{http_code} %{redirect_url}\n' http://127.0.0.1/some/path > $R/http.txt
curl -sk -D $R/headers.txt -o /dev/null https://127.0.0.1/
i=0
while [ $i -lt 30 ]; do
    curl -sk -o /dev/null -w '%{http_code}\n' https://127.0.0.1/invites/x >> $R/invites.txt
    i=$((i + 1))
done
curl -sk -o /dev/null -w '%{http_code}\n' --tls-max 1.1 https://127.0.0.1/ > $R/nginx-tls11.txt 2>/dev/null || echo refused > $R/nginx-tls11.txt

ss -H -ltnup > $R/sockets.txt
pgrep -x epmd > $R/epmd.txt || echo none > $R/epmd.txt
test -s $W/ej/run/ejabberd.pid
"#;

/// The XMPP client the live test uses (python3, standard library only).
const XMPP_CLIENT: &str = r#"# A minimal XMPP client for the tests: STARTTLS, then in-band registration
# (XEP-0077) or a SCRAM-SHA-1 login. Prints one result line per step.
# usage: xmppc.py HOST PORT DOMAIN register|login USER PASSWORD
import base64, hashlib, hmac, os, re, socket, ssl, sys

host, port, domain, mode, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
HEADER = ("<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>" % domain).encode()


def read_until(sock, *marks):
    """Reads until one of the marks (regular expressions) has arrived."""
    buf = b""
    while not any(re.search(m, buf.decode(errors="replace")) for m in marks):
        data = sock.recv(65536)
        if not data:
            break
        buf += data
    return buf.decode(errors="replace")


def starttls():
    s = socket.create_connection((host, port), timeout=20)
    s.sendall(HEADER)
    if "urn:ietf:params:xml:ns:xmpp-tls" not in read_until(s, "</stream:features>"):
        sys.exit("no STARTTLS offered")
    s.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    if "<proceed" not in read_until(s, "<proceed", "<failure"):
        sys.exit("STARTTLS refused")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test's certificate is self-signed
    t = ctx.wrap_socket(s, server_hostname=domain)
    t.sendall(HEADER)
    return t, read_until(t, "</stream:features>")


def register(t):
    t.sendall(("<iq type='set' id='r1'><query xmlns='jabber:iq:register'><username>%s</username>"
               "<password>%s</password></query></iq>" % (user, pw)).encode())
    r = read_until(t, r"</iq>", r"<iq[^>]*/>")
    return "registered" if re.search(r"type=['\"]result['\"]", r) else "refused " + r


def login(t, features):
    mechs = re.findall(r"<mechanism>([^<]+)</mechanism>", features)
    print("mechanisms " + " ".join(sorted(mechs)))
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = "n=%s,r=%s" % (user, nonce)
    t.sendall(("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>%s</auth>"
               % base64.b64encode(("n,," + first_bare).encode()).decode()).encode())
    r = read_until(t, "</challenge>", "</failure>")
    m = re.search(r"<challenge[^>]*>([^<]+)</challenge>", r)
    if not m:
        return "refused " + r
    server_first = base64.b64decode(m.group(1)).decode()
    f = dict(kv.split("=", 1) for kv in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha1", pw.encode(), base64.b64decode(f["s"]), int(f["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha1).digest()
    without_proof = "c=biws,r=" + f["r"]
    auth_message = ",".join([first_bare, server_first, without_proof]).encode()
    signature = hmac.new(hashlib.sha1(client_key).digest(), auth_message, hashlib.sha1).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    final = without_proof + ",p=" + base64.b64encode(proof).decode()
    t.sendall(("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</response>"
               % base64.b64encode(final.encode()).decode()).encode())
    r = read_until(t, "<success", "</failure>")
    return "logged-in" if "<success" in r else "refused " + r


t, features = starttls()
print("tls " + t.version())
print(register(t) if mode == "register" else login(t, features))
"#;

/// STUN Binding answers name the client (v4 and v6, both UDP ports); TURN
/// credentials come over XEP-0215; three relays carry datagrams both ways,
/// the TLS one with the certificate of a renewal just reloaded; wrong
/// credentials get no relay; the secret is made once, not readable by
/// others.
fn stun_and_turn(res: &dyn Fn(&str) -> String, w: &Path) {
    assert_eq!(res("reload-renewed.txt"), "reloaded\n");
    let json = |f: &str| -> Value {
        serde_json::from_str(res(f).trim()).unwrap_or_else(|e| panic!("{f}: {e}: {}", res(f)))
    };
    assert!(
        res("turn-secret-1.txt").contains("new TURN secret written"),
        "{}",
        res("turn-secret-1.txt")
    );
    assert_eq!(
        res("turn-secret-2.txt"),
        "",
        "the second run made a new secret"
    );
    assert_eq!(res("turn-secret-1.sha"), res("turn-secret-2.sha"));
    assert_eq!(res("turn-secret-mode.txt").trim(), "root:ejabberd 640");
    let services = res("turn-services.txt");
    for line in [
        "turn 192.168.77.10:3478/udp with credentials",
        "turn fd77::10:3478/udp with credentials",
        "turns example.org:5349/tcp with credentials",
        "stun 192.168.77.10:3478/udp",
    ] {
        assert!(
            services.contains(line),
            "XEP-0215 lacks {line:?}:\n{services}"
        );
    }
    // The loopback TURN listener behind nginx is not announced.
    assert!(
        !services.contains(":5350/"),
        "XEP-0215 announces the loopback TURN listener:\n{services}"
    );
    let listed = std::fs::read_to_string(w.join("services.json")).unwrap_or_default();
    assert!(!services.contains("password"), "the password was printed");
    assert!(listed.contains("\"password\""), "{listed}");
    for (fam, client) in [("v4", "192.168.77.30"), ("v6", "fd77::30")] {
        for port in [3478, 5349] {
            let b = json(&format!("stun-{fam}-{port}.json"));
            assert_eq!(b["ok"], true, "Binding {fam} {port}: {b}");
            assert_eq!(b["mapped"], b["local"], "{b}");
            assert_eq!(b["mapped"][0], client, "{b}");
        }
    }
    // The mapped address is the client's own, through nginx's TLS too (the
    // PROXY protocol), never 127.0.0.1.
    for (run, relay_ip, client) in [
        ("udp-v4", "192.168.77.10", "192.168.77.30"),
        ("udp-v6", "fd77::10", "fd77::30"),
        ("tls-v4", "192.168.77.10", "192.168.77.30"),
    ] {
        let t = json(&format!("turn-{run}.json"));
        assert_eq!(t["ok"], true, "TURN {run}: {t}");
        assert_eq!(t["relayed"][0], relay_ip, "{t}");
        assert_eq!(t["mapped"], t["local"], "TURN {run}: {t}");
        assert_eq!(t["mapped"][0], client, "TURN {run}: {t}");
        let port = t["relayed"][1].as_u64().unwrap_or(0);
        assert!((49152..=65535).contains(&port), "relay port {port}: {t}");
        assert_eq!(
            t["exchanged"],
            serde_json::json!(["data", "data", "data", "channel", "channel", "channel"])
        );
    }
    let wrong = json("turn-wrong.json");
    assert_eq!(
        wrong["ok"], false,
        "a made-up password got a relay: {wrong}"
    );
    assert!(
        wrong["error"].as_str().unwrap_or("").contains("401"),
        "{wrong}"
    );
    let peer = json("turn-peer.json");
    assert_eq!(peer["echoed"], 18, "{peer}");
}

fn missing_tools() -> Vec<&'static str> {
    [
        "/usr/lib/postgresql/15/bin/initdb",
        "/usr/sbin/ejabberdctl",
        "/usr/sbin/nginx",
        "/usr/lib/nginx/modules/ngx_stream_module.so",
        "/usr/bin/curl",
        "/usr/bin/unshare",
        "/usr/lib/python3/dist-packages/slixmpp",
    ]
    .into_iter()
    .filter(|p| !Path::new(p).exists())
    .collect()
}

#[test]
fn live_postgresql_ejabberd_and_nginx_in_a_network_namespace() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "this test starts PostgreSQL, ejabberd and nginx in a network namespace: run it as root"
    );
    let missing = missing_tools();
    assert!(
        missing.is_empty(),
        "missing {missing:?}: install postgresql ejabberd erlang-p1-pgsql nginx libnginx-mod-stream curl python3-slixmpp (scripts/deps.sh)"
    );

    let b = build("xmpp-test.toml");
    // systemd turns `$$` into `$` before the shell sees the command.
    let reload = unit_command(
        &b.file("etc/systemd/system/ejabberd.service"),
        "ExecReload=",
    )
    .replace("$$", "$");
    let config = b.json("config.json");
    let policy = |key: &str| -> Vec<String> {
        config["tls"][key]
            .as_array()
            .unwrap_or_else(|| panic!("config.json has no tls.{key}"))
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let w = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(w.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(w.path().join("xmppc.py"), XMPP_CLIENT).unwrap();
    // A PID namespace of its own as well: when the script ends, the kernel
    // ends every daemon it started (`nginx -s stop` alone left orphaned
    // workers once, holding the test runner's inherited file descriptors).
    let o = Command::new("unshare")
        .args(["-n", "--pid", "--fork", "--mount-proc", "sh", "-c", LIVE])
        .env("W", w.path())
        .env("OVERLAY", b.out.join("overlay"))
        .env("INTERNAL", "192.168.77.10")
        .env("RELOAD", &reload)
        .env("POLICY_CIPHERS", policy("ciphers").join(" "))
        .env("POLICY_CIPHERSUITES", policy("ciphersuites").join(" "))
        .env("VMTESTS", repo().join("vm-tests/xmpp-server"))
        .output()
        .unwrap();
    let res =
        |f: &str| std::fs::read_to_string(w.path().join("results").join(f)).unwrap_or_default();
    let log = std::fs::read_to_string(w.path().join("ej/log/ejabberd.log")).unwrap_or_default();
    assert!(
        o.status.success(),
        "live run failed:\n{}\n{}\nejabberd.log:\n{log}",
        text(&o.stdout),
        text(&o.stderr)
    );

    // ejabberd's reload asks the running node (erl_call) and fails unless it says ok.
    assert_eq!(res("reload.txt"), "reloaded\n", "ExecReload={reload}");
    assert!(
        res("reload-bad.txt").starts_with("ejabberd reload_config: ")
            && res("reload-bad.txt").ends_with("failed\n"),
        "{}",
        res("reload-bad.txt")
    );

    // PostgreSQL: the role has no powers beyond its rows; idempotent; no secret in the log.
    assert_eq!(
        res("roles-1.txt").lines().collect::<Vec<_>>(),
        [
            "postgresql-roles: created role ejabberd",
            "postgresql-roles: created database ejabberd",
            "postgresql-roles: loaded /usr/share/ejabberd/sql/pg.sql into ejabberd",
            &format!(
                "postgresql-roles: new password for role ejabberd written to {}/etc/sql-password.yml",
                w.path().display()
            ),
        ],
        "what the first run did"
    );
    assert_eq!(res("role.txt").trim(), "f|f|f|f|t");
    assert_eq!(res("db-owner.txt").trim(), "postgres");
    assert_eq!(
        res("pw-1.sha"),
        res("pw-2.sha"),
        "the second run changed the password"
    );
    assert_eq!(res("pw-mode.txt").trim(), "root:ejabberd 640");
    assert_eq!(
        res("roles-2.txt").trim(),
        "",
        "the second run did something: {}",
        res("roles-2.txt")
    );
    assert_eq!(
        res("pw-in-log.txt").trim(),
        "0",
        "the password is in the PostgreSQL log"
    );
    assert!(
        res("create.txt").contains("permission denied"),
        "{}",
        res("create.txt")
    );
    assert!(
        res("other-db.txt").contains("refused"),
        "{}",
        res("other-db.txt")
    );

    // ejabberd: started on SQL, stores SCRAM only.
    assert!(
        res("register.txt").contains("successfully registered"),
        "{}",
        res("register.txt")
    );
    assert_eq!(res("users.txt").trim(), "alice|f|t|t\nbob|f|t|t");
    assert!(
        res("inband-admin.txt").contains("<forbidden"),
        "admin was claimable: {}",
        res("inband-admin.txt")
    );
    assert!(
        res("inband-bob.txt").contains("\nregistered"),
        "{}",
        res("inband-bob.txt")
    );
    let login = res("login-bob.txt");
    assert!(
        login.contains("tls TLSv1.3") && login.contains("\nlogged-in"),
        "{login}"
    );
    assert!(
        !login.contains("DIGEST-MD5") && !login.contains("X-OAUTH2"),
        "weak mechanisms offered: {login}"
    );
    assert!(
        res("login-wrong.txt").contains("not-authorized"),
        "{}",
        res("login-wrong.txt")
    );
    assert_eq!(
        [
            res("c2s-tls12.txt"),
            res("c2s-tls13.txt"),
            res("c2s-tls11.txt"),
            res("c2s-direct-tls13.txt")
        ]
        .map(|s| s.trim().to_string()),
        ["yes", "yes", "no", "yes"].map(String::from),
        "TLS on c2s: 1.2 and 1.3 offered, 1.1 refused"
    );
    // Except one known line per connection through nginx: ejabberd hands its
    // listener option use_proxy_protocol to p1_stun 1.2.7, which knows the
    // option by another name and says so at error level (the PROXY header is
    // read all the same: the TURN relays below see the client's address).
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[error]") || l.contains("[critical]"))
        .filter(|l| !l.contains("Ignoring unknown option '{use_proxy_protocol,true}'"))
        .collect();
    assert!(
        errors.is_empty(),
        "ejabberd logged errors:\n{}",
        errors.join("\n")
    );
    // The line CrowdSec's ejabberd parser reads: mechanism, account and address.
    assert!(
        log.lines().any(|l| l
            .contains("Failed c2s SCRAM-SHA-1 authentication for bob@example.org from ")
            && l.contains("127.0.0.1")),
        "no failed-login line with the client address:\n{log}"
    );

    assert_eq!(
        [
            res("https-tls12.txt"),
            res("https-tls11.txt"),
            res("https-cbc.txt"),
            res("c2s-cbc.txt")
        ]
        .map(|s| s.trim().to_string()),
        ["yes", "no", "no", "no"].map(String::from),
        "5443: TLS 1.2 AEAD only; CBC refused on 5443 and 5222; failed handshakes:\n{}",
        res("tls-why.txt")
    );

    // ejabberd's listeners serve tls.groups (through OPENSSL_CONF), TURN over TLS the whole policy.
    let groups: Vec<String> = [5223, 5443, 5349]
        .iter()
        .flat_map(|p| {
            [
                format!("group-p384-{p}.txt"),
                format!("group-x25519-{p}.txt"),
            ]
        })
        .map(|f| format!("{f}: {}", res(&f).trim()))
        .collect();
    assert_eq!(
        groups,
        [
            "group-p384-5223.txt: yes",
            "group-x25519-5223.txt: no",
            "group-p384-5443.txt: yes",
            "group-x25519-5443.txt: no",
            "group-p384-5349.txt: yes",
            "group-x25519-5349.txt: no",
        ],
        "tls.groups = [secp384r1] on every TLS listener of ejabberd; failed handshakes:\n{}",
        res("tls-why.txt")
    );
    // TURN over TLS is nginx's (ejabberd_stun takes no cipher list, and
    // fast_tls's own keeps ECDHE-ECDSA CBC suites): the whole policy, each of
    // its suites accepted alone, CBC refused.
    assert_eq!(
        [
            res("turn-tls12.txt"),
            res("turn-tls11.txt"),
            res("turn-cbc.txt")
        ]
        .map(|s| s.trim().to_string()),
        ["yes", "no", "no"].map(String::from),
        "TURN over TLS: tls.protocols (1.2 and 1.3, 1.1 refused), no CBC; failed handshakes:\n{}",
        res("tls-why.txt")
    );
    for (file, key) in [
        ("turn-ciphers.txt", "ciphers"),
        ("turn-ciphersuites.txt", "ciphersuites"),
    ] {
        let want: Vec<String> = policy(key).iter().map(|c| format!("{c} yes")).collect();
        assert!(!want.is_empty(), "tls.{key} is empty");
        assert_eq!(
            res(file).lines().collect::<Vec<_>>(),
            want,
            "TURN over TLS must accept every suite of tls.{key}; failed handshakes:\n{}",
            res("tls-why.txt")
        );
    }

    stun_and_turn(&res, w.path());

    // nginx: redirect, headers, rate limit in front of the ejabberd backend.
    assert_eq!(res("http.txt").trim(), "301 https://127.0.0.1/some/path");
    let headers = res("headers.txt").to_lowercase();
    for h in [
        "strict-transport-security: max-age=63072000; includesubdomains",
        "x-content-type-options: nosniff",
        "x-frame-options: sameorigin",
        "referrer-policy: no-referrer",
        "permissions-policy:",
        "content-security-policy:",
    ] {
        assert!(headers.contains(h), "missing header {h}:\n{headers}");
    }
    assert!(
        !headers.contains("x-xss-protection") && headers.contains("server: nginx\r\n"),
        "{headers}"
    );
    let codes: Vec<String> = res("invites.txt").lines().map(str::to_string).collect();
    assert_eq!(codes.len(), 30);
    assert!(
        codes[..21].iter().all(|c| c != "429"),
        "429 within the burst: {codes:?}"
    );
    assert!(
        codes.iter().any(|c| c == "429"),
        "no 429 past the burst: {codes:?}"
    );
    assert!(
        res("nginx-tls11.txt").trim() != "200",
        "nginx answered over TLS 1.1"
    );

    // Sockets: as the exposure table says; no epmd.
    let sockets = res("sockets.txt");
    let listening = |addr: &str| {
        sockets
            .lines()
            .any(|l| l.split_whitespace().nth(4) == Some(addr))
    };
    for addr in [
        "127.0.0.1:5210",
        "127.0.0.1:8444",
        "192.168.77.10:6443",
        "127.0.0.1:5432",
        "*:5222",
        "*:5223",
        "*:5269",
        "*:5270",
        "*:5443",
        // STUN/TURN over UDP on each TURN address (ejabberd.yml.tera says why).
        "192.168.77.10:3478",
        "[fd77::10]:3478",
        "192.168.77.10:5349",
        "[fd77::10]:5349",
        // TURN over TLS: nginx on every address, ejabberd behind it on loopback.
        "0.0.0.0:5349",
        "[::]:5349",
        "127.0.0.1:5350",
        "0.0.0.0:443",
        "[::]:443",
        "0.0.0.0:80",
    ] {
        assert!(listening(addr), "nothing listens on {addr}:\n{sockets}");
    }
    for l in sockets.lines().filter(|l| {
        l.starts_with("tcp")
            && l.split_whitespace()
                .nth(4)
                .is_some_and(|a| a.ends_with(":5349"))
    }) {
        assert!(l.contains("\"nginx\""), "5349/tcp is not nginx's: {l}");
    }
    for port in [":4369", ":1883", ":5280"] {
        assert!(
            !sockets.lines().any(|l| l
                .split_whitespace()
                .nth(4)
                .is_some_and(|a| a.ends_with(port))),
            "{port} listens:\n{sockets}"
        );
    }
    assert_eq!(res("epmd.txt").trim(), "none");
}

#[test]
fn exposure_options_move_binds_and_rows_together() {
    let b = build_variant(
        "[nginx]\nexposure = \"localhost\"\n\n[ejabberd]\nadmin_exposure = \"localhost\"\n",
    );
    let d = directives(&b.file("etc/nginx/nginx.conf"));
    let listens: Vec<&String> = d.iter().filter(|l| l.starts_with("listen ")).collect();
    assert_eq!(
        listens,
        [
            "listen 127.0.0.1:80 default_server;",
            "listen [::1]:80 default_server;",
            "listen 127.0.0.1:443 ssl http2 default_server;",
            "listen [::1]:443 ssl http2 default_server;",
            "listen 127.0.0.1:5349 ssl;",
            "listen [::1]:5349 ssl;"
        ]
    );
    let y = yaml(&b.file("etc/ejabberd/ejabberd.yml"));
    assert_eq!(listener(&y, 6443)["ip"], "127.0.0.1");
    let c = b.json("config.json");
    let rows = c["firewall"]["listeners"].as_array().unwrap();
    for (service, port) in [
        ("nginx", 80),
        ("nginx", 443),
        ("nginx", 5349),
        ("ejabberd", 6443),
    ] {
        let r = rows
            .iter()
            .find(|r| r["service"] == service && r["port"] == port)
            .unwrap();
        assert_eq!(r["exposure"], "localhost", "{service} {port}");
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = nginx_conf_for_host(&b, dir.path());
    run(Command::new("nginx").arg("-t").arg("-c").arg(&conf));

    let t = build_variant("[nginx]\nexposure = \"trusted\"\n");
    let d = directives(&t.file("etc/nginx/nginx.conf"));
    assert!(
        has(&d, "listen 172.16.0.10:443 ssl http2 default_server;")
            && has(&d, "listen 172.16.0.10:5349 ssl;"),
        "{d:?}"
    );
    let c = t.json("config.json");
    let turn = c["firewall"]["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["port"] == 5349 && r["proto"] == "tcp")
        .unwrap();
    assert_eq!(
        (&turn["service"], &turn["exposure"], &turn["bind"]),
        (
            &serde_json::json!("nginx"),
            &serde_json::json!("trusted"),
            &serde_json::json!(["172.16.0.10"])
        )
    );
}

/// A TLS stream must be in the exposure table as nginx's TLS socket, and the
/// stream module is in the image only when some stream needs it.
#[test]
fn tls_streams_need_their_exposure_row_and_bring_the_stream_module() {
    let dir = tempfile::tempdir().unwrap();
    let base = repo().join("profiles/xmpp-server.toml");
    let profile = dir.path().join("variant.toml");
    std::fs::write(
        &profile,
        format!(
            "[profile]\nimports = [\"{}\"]\n\n[nginx]\ntls_streams = [{{ port = 7000, upstream = \"127.0.0.1:7001\" }}]\n",
            base.display()
        ),
    )
    .unwrap();
    let (o, _) = hardroot_build(&profile, dir.path());
    let err = words(&o.stderr);
    assert!(!o.status.success(), "a stream without its row was built");
    assert!(
        err.contains("nginx: TLS stream port 7000 needs one firewall.listeners row (service nginx, tcp, tls direct, exposure public), found 0"),
        "{err}"
    );
    assert!(!err.contains("port 5349"), "{err}");

    let packages = |b: &Built| -> Vec<String> {
        b.json("manifest.json")["packages"]
            .as_array()
            .expect("manifest.json packages")
            .iter()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect()
    };
    let xmpp = build("xmpp-server.toml");
    assert!(packages(&xmpp).iter().any(|p| p == "libnginx-mod-stream"));
    let web = build("web.toml");
    assert!(!packages(&web).iter().any(|p| p == "libnginx-mod-stream"));
    assert!(!web.file("etc/nginx/nginx.conf").contains("stream {"));
}

// ---- live: ACME with pebble ---------------------------------------------------------------------

/// In a network and mount namespace of its own: the domain's names resolve to
/// loopback through a private /etc/hosts, pebble (with a CA made here) runs on
/// the address the test profile names, and the rendered nginx answers the
/// http-01 challenges for certbot run as hardroot-acme.service runs it.
const ACME: &str = r#"
set -eu
O=$OVERLAY
R=$W/results
mkdir -p $R $W/ca $W/tls $W/nginx
cleanup() {
    nginx -c $W/nginx/nginx.conf -s stop 2>/dev/null || true
    [ -f $W/pebble.pid ] && kill "$(cat $W/pebble.pid)" 2>/dev/null || true
}
trap cleanup EXIT

ip link set lo up
ip addr add $ACME_IP/32 dev lo
# Names resolve to this namespace only (a private mount namespace).
printf '127.0.0.1 localhost\n127.0.0.1 %s\n' "$NAMES" > $W/hosts
mount --bind $W/hosts /etc/hosts

# A throwaway CA for pebble's own HTTPS endpoint.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=test-ca \
    -keyout $W/ca/ca.key -out $W/ca/ca.pem 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=pebble \
    -keyout $W/ca/pebble.key -out $W/ca/pebble.csr 2>/dev/null
printf 'subjectAltName=IP:%s\n' "$ACME_IP" > $W/ca/ext
openssl x509 -req -in $W/ca/pebble.csr -CA $W/ca/ca.pem -CAkey $W/ca/ca.key -CAcreateserial -days 1 \
    -extfile $W/ca/ext -out $W/ca/pebble.pem 2>/dev/null
cat > $W/pebble.json <<JSON
{"pebble": {"listenAddress": "$ACME_IP:14000", "managementListenAddress": "$ACME_IP:15000",
  "certificate": "$W/ca/pebble.pem", "privateKey": "$W/ca/pebble.key",
  "httpPort": 80, "tlsPort": 5001, "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 pebble -config $W/pebble.json > $W/pebble.log 2>&1 &
echo $! > $W/pebble.pid

# First boot: the self-signed fallback, then nginx (it serves the challenges).
sed "s#/etc/hardroot/tls/#$W/tls/#g" $O/usr/lib/hardroot/tls-install > $W/tls-install
sed "s#/usr/lib/hardroot/tls-install#sh $W/tls-install#" $O/usr/lib/hardroot/tls-selfsigned | sh > /dev/null
cp $O/etc/hardroot/tls/ffdhe4096.pem $W/tls/
openssl x509 -in $W/tls/fullchain.pem -noout -issuer > $R/issuer-before.txt
sed -e "s#/etc/hardroot/tls/#$W/tls/#g" -e "s#/var/log/nginx/#$W/nginx/#g" -e "s#/run/nginx.pid#$W/nginx/nginx.pid#" \
    -e "s#root /var/lib/hardroot/acme;#root $W/webroot;#" $O/etc/nginx/nginx.conf > $W/nginx/nginx.conf
nginx -c $W/nginx/nginx.conf

# The rendered deploy hook with its paths in $W; systemctl is logged.
sed -e "s#/usr/lib/hardroot/tls-install#sh $W/tls-install#" -e "s#/etc/hardroot/tls/#$W/tls/#g" \
    -e "s#/etc/letsencrypt/#$W/le/config/#" \
    -e "s#systemctl try-reload-or-restart#echo >> $R/reloads.txt#" $O/usr/lib/hardroot/acme-deploy > $W/hook
chmod 755 $W/hook
touch $R/reloads.txt
# The unit's certbot command (the test took it from ExecStart=), with certbot's
# state, the webroot and the hook moved into $W.
C=$(printf '%s' "$CERTBOT" | sed -e "s#--webroot-path /var/lib/hardroot/acme#--webroot-path $W/webroot#" \
    -e "s#--deploy-hook /usr/lib/hardroot/acme-deploy#--deploy-hook $W/hook#")
C="$C --config-dir $W/le/config --work-dir $W/le/work --logs-dir $W/le/logs"
# ExecStartPre: the webroot (nginx above already serves it).
$(printf '%s' "$PRE" | sed "s#/var/lib/hardroot/acme#$W/webroot#")
export REQUESTS_CA_BUNDLE=$W/ca/ca.pem
i=0; until curl -s -o /dev/null --cacert $W/ca/ca.pem https://$ACME_IP:14000/dir; do i=$((i+1)); [ $i -lt 50 ] || exit 1; sleep 0.2; done
# ExecStart, then ExecStartPost (the hook without RENEWED_LINEAGE), twice.
$C > $R/run-1.txt 2>&1
$W/hook
cp $R/reloads.txt $R/reloads-1.txt
$C > $R/run-2.txt 2>&1
$W/hook
cp $R/reloads.txt $R/reloads-2.txt
openssl x509 -in $W/tls/fullchain.pem -noout -issuer > $R/issuer-after.txt
openssl x509 -in $W/tls/fullchain.pem -noout -text > $R/cert.txt
stat -c '%a' $W/tls/privkey.pem $W/tls/fullchain.pem $W/tls/combined.pem > $R/modes.txt
# What the hook's reload does in the image: nginx now serves the ACME certificate.
nginx -c $W/nginx/nginx.conf -s reload
sleep 1
echo | openssl s_client -connect 127.0.0.1:443 -servername example.org 2>/dev/null | openssl x509 -noout -issuer > $R/served-issuer.txt
# The installed files removed and the fallback back (a first boot again): the
# unit's next run puts certbot's certificate back without a new issuance.
rm $W/tls/fullchain.pem
sed "s#/usr/lib/hardroot/tls-install#sh $W/tls-install#" $O/usr/lib/hardroot/tls-selfsigned | sh > /dev/null
$C > $R/run-3.txt 2>&1
$W/hook
cp $R/reloads.txt $R/reloads-3.txt
openssl x509 -in $W/tls/fullchain.pem -noout -issuer > $R/issuer-restored.txt
"#;

#[test]
fn live_acme_with_pebble_replaces_the_fallback_and_reloads() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "this test starts pebble and nginx in network and mount namespaces: run it as root"
    );
    let missing: Vec<&str> = [
        "/usr/bin/pebble",
        "/usr/bin/certbot",
        "/usr/sbin/nginx",
        "/usr/bin/curl",
    ]
    .into_iter()
    .filter(|p| !Path::new(p).exists())
    .collect();
    assert!(
        missing.is_empty(),
        "missing {missing:?}: install pebble certbot nginx curl (scripts/deps.sh)"
    );

    let b = build("xmpp-test.toml");
    // The script below runs certbot exactly as the unit does.
    let unit = b.file("etc/systemd/system/hardroot-acme.service");
    let certbot = certbot_command(&unit);
    let words: Vec<&str> = certbot.split(' ').collect();
    let names: Vec<&str> = words
        .windows(2)
        .filter(|w| w[0] == "-d")
        .map(|w| w[1])
        .collect();
    assert_eq!(names.len(), 5, "{certbot}");
    let w = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(w.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = Command::new("unshare")
        .args(["-n", "-m", "sh", "-c", ACME])
        .env("W", w.path())
        .env("OVERLAY", b.out.join("overlay"))
        .env("ACME_IP", "192.168.77.20")
        .env("NAMES", names.join(" "))
        .env("CERTBOT", &certbot)
        .env("PRE", unit_command(&unit, "ExecStartPre="))
        .output()
        .unwrap();
    let res =
        |f: &str| std::fs::read_to_string(w.path().join("results").join(f)).unwrap_or_default();
    let pebble = std::fs::read_to_string(w.path().join("pebble.log")).unwrap_or_default();
    assert!(
        o.status.success(),
        "ACME run failed:\n{}\n{}\ncertbot:\n{}\npebble:\n{pebble}",
        text(&o.stdout),
        text(&o.stderr),
        res("run-1.txt")
    );

    let shows = |file: &str, wanted: &str| {
        let got = res(file);
        assert!(got.contains(wanted), "{file} lacks {wanted:?}:\n{got}");
    };
    shows("issuer-before.txt", "CN = example.org");
    shows("issuer-after.txt", "Pebble");
    // nginx serves the new certificate after the hook's reload.
    shows("served-issuer.txt", "Pebble");
    shows("cert.txt", "NIST CURVE: P-384");
    for name in &names {
        shows("cert.txt", &format!("DNS:{name}"));
    }
    assert_eq!(res("modes.txt"), "600\n644\n640\n");
    // The deploy hook installed and reloaded once; ExecStartPost found it done.
    assert_eq!(res("reloads-1.txt"), "nginx.service\nejabberd.service\n");
    // The second run renews nothing and reloads nothing.
    shows("run-2.txt", "not yet due for renewal");
    assert_eq!(res("reloads-2.txt"), res("reloads-1.txt"));
    // After the fallback replaced it, the third run put certbot's certificate
    // back (and reloaded) without asking the CA for a new one.
    shows("run-3.txt", "not yet due for renewal");
    shows("issuer-restored.txt", "Pebble");
    assert_eq!(
        res("reloads-3.txt"),
        "nginx.service\nejabberd.service\n".repeat(2)
    );
}
