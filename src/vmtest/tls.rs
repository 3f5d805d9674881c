//! `probe_tls(port)`: one TLS listener of the exposure table measured with
//! the host's openssl from a client host that may reach it, against the
//! typed policy of module tls in config.json: `tls.protocols` (and nothing
//! older), `tls.ciphers` (TLS ≤ 1.2, OpenSSL names), `tls.ciphersuites`
//! (TLS 1.3), `tls.groups`; SNI and the XMPP host are `tls.domain`. The
//! listener says how to speak to it: `tls` = "direct" | "starttls" and
//! `starttls` = the protocol `openssl s_client -starttls` takes. Nothing is
//! read from a rendered config.
use super::host;
use crate::exposure::{Listener, Table};
use serde_json::Value;
use std::time::Duration;

const VERSIONS: [(&str, &str); 4] = [
    ("TLSv1", "-tls1"),
    ("TLSv1.1", "-tls1_1"),
    ("TLSv1.2", "-tls1_2"),
    ("TLSv1.3", "-tls1_3"),
];
/// Every TLS 1.3 suite (RFC 8446 B.4).
const TLS13_SUITES: [&str; 5] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
];
/// Named groups tried besides the policy's own (RFC 8446 4.2.7, RFC 7919).
const GROUPS: [&str; 10] = [
    "X25519",
    "X448",
    "P-256",
    "P-384",
    "P-521",
    "ffdhe2048",
    "ffdhe3072",
    "ffdhe4096",
    "ffdhe6144",
    "ffdhe8192",
];
const PARALLEL: usize = 8;

/// The typed policy (module tls) and the listener to probe.
#[derive(Debug, Clone)]
pub struct Policy {
    pub domain: String,
    pub protocols: Vec<String>,
    pub ciphers: Vec<String>,
    pub ciphersuites: Vec<String>,
    pub groups: Vec<String>,
    pub listener: Listener,
}

fn strings(tls: &Value, key: &str) -> Result<Vec<String>, String> {
    tls.get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("config.json has no tls.{key} (module tls's typed policy)"))?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("config.json: tls.{key} holds a non-string"))
        })
        .collect()
}

impl Policy {
    pub fn from_config(config: &Value, table: &Table, port: u16) -> Result<Policy, String> {
        let listener = table
            .listeners
            .iter()
            .find(|l| l.proto == "tcp" && l.covers("tcp", port) && !l.is_range())
            .ok_or_else(|| format!("no tcp listener on port {port} in firewall.listeners"))?
            .clone();
        match listener.tls.as_deref() {
            Some("direct" | "starttls") => {}
            other => {
                return Err(format!(
                    "{}: firewall.listeners says tls = {:?}, not \"direct\" or \"starttls\"",
                    listener.label(),
                    other.unwrap_or("(absent)")
                ));
            }
        }
        if listener.tls.as_deref() == Some("starttls")
            && listener.starttls.as_deref().unwrap_or("").is_empty()
        {
            return Err(format!(
                "{}: tls = \"starttls\" but no starttls protocol",
                listener.label()
            ));
        }
        let tls = config
            .get("tls")
            .ok_or("config.json has no tls options: the profile does not import module tls")?;
        Ok(Policy {
            domain: tls
                .get("domain")
                .and_then(Value::as_str)
                .ok_or("config.json has no tls.domain")?
                .to_string(),
            protocols: strings(tls, "protocols")?,
            ciphers: strings(tls, "ciphers")?,
            ciphersuites: strings(tls, "ciphersuites")?,
            groups: strings(tls, "groups")?,
            listener,
        })
    }

    /// `HOST:PORT`, an IPv6 address in brackets (as openssl and the report read it).
    pub fn endpoint(&self, host: &str) -> String {
        if host.contains(':') {
            format!("[{host}]:{}", self.listener.port)
        } else {
            format!("{host}:{}", self.listener.port)
        }
    }

    /// How a finding line starts (OUT/tls-PORT.txt, docs/testing.md).
    fn at(&self, host: &str) -> String {
        let starttls = if self.listener.tls.as_deref() == Some("starttls") {
            " STARTTLS"
        } else {
            ""
        };
        format!("{}{starttls}", self.endpoint(host))
    }

    /// openssl s_client's arguments for a handshake with `extra`.
    pub fn s_client(&self, host: &str, extra: &[&str]) -> Vec<String> {
        let connect = self.endpoint(host);
        let mut argv: Vec<String> = ["openssl", "s_client", "-connect", &connect, "-servername"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        argv.push(self.domain.clone());
        if let Some(proto) = self.listener.starttls.as_deref().filter(|p| !p.is_empty()) {
            // -name: the name the protocol itself carries (a stream's "to",
            // an EHLO), whatever the protocol; s_client ignores it where none.
            argv.extend(["-starttls".into(), proto.to_string(), "-name".into()]);
            argv.push(self.domain.clone());
        }
        argv.extend(extra.iter().map(|s| s.to_string()));
        argv
    }
}

/// OpenSSL's and the IETF's names of one group, compared alike.
pub fn group_key(name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "prime256v1" | "secp256r1" | "p-256" => "p-256".into(),
        "secp384r1" | "p-384" => "p-384".into(),
        "secp521r1" | "p-521" => "p-521".into(),
        other => other.into(),
    }
}

/// One handshake: accepted, and the output for the record.
type Handshake = (bool, String);

fn handshakes(ns: &str, runs: Vec<Vec<String>>) -> Vec<Handshake> {
    let mut out = Vec::new();
    for chunk in runs.chunks(PARALLEL) {
        let handles: Vec<_> = chunk
            .iter()
            .map(|argv| {
                let mut full: Vec<String> = if ns.is_empty() {
                    Vec::new()
                } else {
                    ["ip", "netns", "exec", ns]
                        .iter()
                        .map(|s| s.to_string())
                        .collect()
                };
                full.extend(argv.iter().cloned());
                std::thread::spawn(move || match host::run(&full, Duration::from_secs(30)) {
                    Ok(o) => {
                        let text = format!("{}{}", o.stdout_text(), o.stderr_text());
                        (o.code == 0 && !text.contains("Cipher is (NONE)"), text)
                    }
                    Err(e) => (false, e),
                })
            })
            .collect();
        out.extend(
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or((false, "panicked".into()))),
        );
    }
    out
}

fn negotiated(text: &str) -> &str {
    text.lines()
        .find_map(|l| l.split_once(", Cipher is ").map(|(_, c)| c.trim()))
        .unwrap_or("?")
}

/// TLS 1.2 ciphers the host's openssl knows (all of them, security level 0).
fn known_tls12_ciphers() -> Result<Vec<String>, String> {
    let argv: Vec<String> = [
        "openssl",
        "ciphers",
        "-tls1_2",
        "-s",
        "ALL:COMPLEMENTOFALL:@SECLEVEL=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let o = host::run(&argv, Duration::from_secs(30))?;
    if o.code != 0 {
        return Err(format!("openssl ciphers failed: {}", o.stderr_text()));
    }
    Ok(o.stdout_text()
        .trim()
        .split(':')
        .filter(|c| !c.is_empty() && !c.starts_with("TLS_"))
        .map(str::to_string)
        .collect())
}

/// Probe the listener from namespace `ns` at `hosts` (the server's
/// addresses it binds): in full at the first, versions at the others.
/// Returns the findings; Err lists every disagreement with the policy.
pub fn probe(p: &Policy, ns: &str, hosts: &[String], ca: Option<&str>) -> Result<String, String> {
    let first = hosts
        .first()
        .ok_or("the server has no address this client can reach")?;
    let mut names: Vec<String> = Vec::new();
    let mut runs: Vec<Vec<String>> = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        for (v, flag) in VERSIONS {
            names.push(format!("{host} {v}"));
            let old = matches!(v, "TLSv1" | "TLSv1.1");
            let extra: Vec<&str> = if old {
                vec![flag, "-cipher", "DEFAULT:@SECLEVEL=0"]
            } else {
                vec![flag]
            };
            runs.push(p.s_client(host, &extra));
        }
        if i > 0 {
            continue;
        }
        if p.protocols.iter().any(|v| v == "TLSv1.2") {
            for c in known_tls12_ciphers()? {
                let cipher = format!("{c}:@SECLEVEL=0");
                runs.push(p.s_client(host, &["-tls1_2", "-cipher", &cipher]));
                names.push(format!("cipher {c}"));
            }
        }
        if p.protocols.iter().any(|v| v == "TLSv1.3") {
            for s in TLS13_SUITES {
                runs.push(p.s_client(host, &["-tls1_3", "-ciphersuites", s]));
                names.push(format!("suite {s}"));
            }
        }
        let newest = if p.protocols.iter().any(|v| v == "TLSv1.3") {
            "-tls1_3"
        } else {
            "-tls1_2"
        };
        let mut groups: Vec<String> = GROUPS.iter().map(|g| g.to_string()).collect();
        for g in &p.groups {
            if !groups.iter().any(|k| group_key(k) == group_key(g)) {
                groups.push(g.clone());
            }
        }
        for g in groups {
            runs.push(p.s_client(host, &[newest, "-groups", &g]));
            names.push(format!("group {g}"));
        }
        if let Some(ca) = ca {
            runs.push(p.s_client(
                host,
                &[
                    "-verify_return_error",
                    "-verify_hostname",
                    &p.domain,
                    "-CAfile",
                    ca,
                ],
            ));
            names.push("verify".into());
        }
    }
    let results = handshakes(ns, runs);
    let got: Vec<(&String, &Handshake)> = names.iter().zip(&results).collect();
    let accepted = |prefix: &str| -> Vec<String> {
        got.iter()
            .filter(|(n, (ok, _))| *ok && n.starts_with(prefix))
            .map(|(n, _)| n[prefix.len()..].to_string())
            .collect()
    };
    let where_ = format!("{} port {}", p.listener.service, p.listener.port);
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    for host in hosts {
        for (v, _) in VERSIONS {
            let Some((_, (ok, text))) = got.iter().find(|(n, _)| **n == format!("{host} {v}"))
            else {
                continue;
            };
            let allowed = p.protocols.iter().any(|a| a == v);
            lines.push(format!(
                "{} {v}: {}",
                p.at(host),
                if *ok {
                    format!("accepted, {}", negotiated(text))
                } else {
                    "refused".into()
                }
            ));
            if *ok != allowed {
                let tail: String = text
                    .chars()
                    .rev()
                    .take(800)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                problems.push(format!(
                    "{where_} at {host}: {v} {} but tls.protocols = {:?}{}",
                    if *ok { "accepted" } else { "refused" },
                    p.protocols,
                    if *ok {
                        String::new()
                    } else {
                        format!("\n{tail}")
                    }
                ));
            }
        }
    }
    let mut subset =
        |what: &str, prefix: &str, allowed: &[String], key: fn(&str) -> String, expected: bool| {
            if !expected {
                return;
            }
            let acc = accepted(prefix);
            let words = if acc.is_empty() {
                "none".to_string()
            } else {
                acc.join(" ")
            };
            lines.push(format!("{} {what} accepted: {words}", p.at(first)));
            let extra: Vec<&String> = acc
                .iter()
                .filter(|a| !allowed.iter().any(|x| key(x) == key(a)))
                .collect();
            if acc.is_empty() || !extra.is_empty() {
                problems.push(format!(
                    "{where_}: {what} accepted {acc:?}, the policy allows only {allowed:?}"
                ));
            }
        };
    let same = |s: &str| s.to_string();
    let has = |v: &str| p.protocols.iter().any(|x| x == v);
    subset(
        "TLS 1.2 ciphers",
        "cipher ",
        &p.ciphers,
        same,
        has("TLSv1.2"),
    );
    subset(
        "TLS 1.3 suites",
        "suite ",
        &p.ciphersuites,
        same,
        has("TLSv1.3"),
    );
    subset("groups", "group ", &p.groups, group_key, true);
    if ca.is_some() {
        let ok = got.iter().any(|(n, (ok, _))| *n == "verify" && *ok);
        lines.push(format!(
            "{} certificate for {} verifies: {}",
            p.at(first),
            p.domain,
            if ok { "yes" } else { "NO" }
        ));
        if !ok {
            problems.push(format!(
                "{where_}: the certificate does not verify for {}",
                p.domain
            ));
        }
    }
    let report = lines.join("\n");
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(format!(
            "{report}\n\n{} problem(s):\n{}",
            problems.len(),
            problems.join("\n")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Value {
        serde_json::json!({
            "tls": {"domain": "chat.test", "protocols": ["TLSv1.2", "TLSv1.3"],
                    "ciphers": ["ECDHE-ECDSA-AES256-GCM-SHA384"],
                    "ciphersuites": ["TLS_AES_256_GCM_SHA384"], "groups": ["X25519", "secp384r1"]},
            "firewall": {
                "exposure_rules": [{"exposure": "public", "from": "anyone", "drop": false, "bind": "any", "listens": true}],
                "listeners": [
                    {"service": "chat", "proto": "tcp", "port": 5222, "exposure": "public", "tls": "starttls", "starttls": "smtp"},
                    {"service": "web", "proto": "tcp", "port": 443, "exposure": "public", "tls": "direct", "starttls": ""},
                    {"service": "web", "proto": "tcp", "port": 80, "exposure": "public", "tls": "none", "starttls": ""}]}
        })
    }

    #[test]
    fn the_policy_and_the_way_in_come_from_config_json() {
        let c = config();
        let t = Table::from_config(&c).unwrap();
        let p = Policy::from_config(&c, &t, 5222).unwrap();
        assert_eq!(p.protocols, ["TLSv1.2", "TLSv1.3"]);
        let argv = p.s_client("fd77::10", &["-tls1_3"]);
        assert_eq!(
            argv.join(" "),
            "openssl s_client -connect [fd77::10]:5222 -servername chat.test -starttls smtp -name chat.test -tls1_3"
        );
        let direct = Policy::from_config(&c, &t, 443).unwrap();
        assert!(
            !direct
                .s_client("192.168.77.10", &[])
                .contains(&"-starttls".to_string())
        );
        let e = Policy::from_config(&c, &t, 80).unwrap_err();
        assert!(
            e.contains("web 80/tcp (public)") && e.contains("\"none\""),
            "{e}"
        );
        assert!(
            Policy::from_config(&c, &t, 8080)
                .unwrap_err()
                .contains("no tcp listener on port 8080")
        );
        let mut old = c.clone();
        old["tls"].as_object_mut().unwrap().remove("ciphersuites");
        let e = Policy::from_config(&old, &t, 443).unwrap_err();
        assert!(e.contains("tls.ciphersuites"), "{e}");
        assert_eq!(group_key("secp384r1"), group_key("P-384"));
    }

    /// A real handshake against openssl s_server on loopback, when the host has openssl.
    #[test]
    fn a_server_outside_the_policy_is_named() {
        let ok = std::process::Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(ok, "openssl is needed (the VM test's host tool)");
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        let cert = dir.path().join("c.pem");
        let made = std::process::Command::new("openssl")
            .args([
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
                "/CN=chat.test",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap();
        assert!(made.status.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // A server that offers TLS 1.2 only, with any cipher.
        let mut server = std::process::Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-tls1_2",
                "-accept",
                &port.to_string(),
            ])
            .arg("-key")
            .arg(&key)
            .arg("-cert")
            .arg(&cert)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let up = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
            && up.elapsed().as_secs() < 10
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut c = config();
        c["firewall"]["listeners"][1]["port"] = port.into();
        let t = Table::from_config(&c).unwrap();
        let p = Policy::from_config(&c, &t, port).unwrap();
        let err = probe(&p, "", &["127.0.0.1".into()], None).unwrap_err();
        let _ = server.kill();
        let _ = server.wait();
        assert!(err.contains("TLSv1.3 refused but tls.protocols"), "{err}");
        assert!(
            err.contains(&format!("127.0.0.1:{port} TLSv1.2: accepted")),
            "{err}"
        );
    }
}
