//! Section 5: live hardening values next to what the profile asked for —
//! effective sshd settings, sysctl values, firewall chains (v4/v6) and the
//! TLS versions and ciphers each TLS port accepted.
use super::facts;
use super::identity::text;
use super::inputs::Inputs;
use super::page::Cell;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Serialize)]
pub struct Hardening {
    pub sshd: Vec<Compare>,
    pub sysctl: Vec<Compare>,
    pub firewall: Vec<ChainRow>,
    pub tls: Vec<TlsRow>,
    pub notes: Vec<String>,
    pub bad: usize,
}

/// One setting: where the wanted value comes from, the wanted and the live value.
#[derive(Serialize)]
pub struct Compare {
    pub name: String,
    pub source: String,
    pub asked: String,
    pub live: Cell,
}

#[derive(Serialize)]
pub struct ChainRow {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub asked_policy: String,
    pub asked_rules: String,
    pub policy: Cell,
    pub rules: Cell,
}

#[derive(Serialize)]
pub struct TlsRow {
    pub port: u32,
    pub mode: String,
    pub source: String,
    pub asked_versions: String,
    pub versions: Vec<Cell>,
    pub asked_ciphers: String,
    pub ciphers: Vec<Cell>,
}

pub fn collect(inputs: &Inputs) -> Hardening {
    let mut notes = Vec::new();
    let sshd = sshd(inputs, &mut notes);
    let sysctl = sysctl(inputs, &mut notes);
    let firewall = firewall(inputs, &mut notes);
    let tls = tls(inputs, &mut notes);
    let bad = sshd
        .iter()
        .chain(&sysctl)
        .filter(|c| c.live.state == "bad")
        .count()
        + firewall.iter().filter(|r| r.policy.state == "bad").count()
        + tls
            .iter()
            .flat_map(|r| r.versions.iter().chain(&r.ciphers))
            .filter(|c| c.state == "bad")
            .count();
    Hardening {
        sshd,
        sysctl,
        firewall,
        tls,
        notes,
        bad,
    }
}

/// sshd -T keys that matter, and where the profile sets each: an option of
/// the ssh module, or the module's fixed policy.
const SSHD_KEYS: &[(&str, &str, &str)] = &[
    ("port", "port", ""),
    ("passwordauthentication", "", "no"),
    ("kbdinteractiveauthentication", "", "no"),
    ("permitemptypasswords", "", "no"),
    ("pubkeyauthentication", "", "yes"),
    ("permitrootlogin", "permit_root_login", ""),
    ("maxauthtries", "max_auth_tries", ""),
    ("logingracetime", "login_grace_time", ""),
    ("clientaliveinterval", "client_alive_interval", ""),
    ("x11forwarding", "", "no"),
    ("allowtcpforwarding", "allow_tcp_forwarding", ""),
    ("ciphers", "ciphers", ""),
    ("macs", "macs", ""),
    ("kexalgorithms", "kex_algorithms", ""),
    ("hostkeyalgorithms", "host_key_algorithms", ""),
    ("pubkeyacceptedalgorithms", "pubkey_algorithms", ""),
];

fn sshd(inputs: &Inputs, notes: &mut Vec<String>) -> Vec<Compare> {
    let live = inputs.fact("sshd-T.txt").map(|t| facts::sshd(&t));
    if live.is_none() {
        notes.push("facts/sshd-T.txt missing: effective sshd settings not collected".into());
    }
    SSHD_KEYS
        .iter()
        .map(|(key, option, policy)| {
            let (asked, source) = if option.is_empty() {
                (Some(policy.to_string()), "ssh module policy".to_string())
            } else {
                (
                    inputs.config("ssh", option).map(option_text),
                    format!("ssh.{option}"),
                )
            };
            let got = live
                .as_ref()
                .map(|l| l.get(*key).cloned().unwrap_or_else(|| "(absent)".into()));
            Compare {
                name: key.to_string(),
                source,
                live: compare(asked.as_deref(), got.as_deref(), sshd_same),
                asked: asked.unwrap_or_else(|| "—".into()),
            }
        })
        .collect()
}

/// OpenSSH prints `prohibit-password` under its old name.
fn sshd_same(asked: &str, live: &str) -> bool {
    let norm = |s: &str| s.replace("without-password", "prohibit-password");
    norm(asked) == norm(live)
}

/// Option values as sshd and sysctl print them: lists comma-joined, bools yes/no.
fn option_text(v: &Value) -> String {
    match v {
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => text(other),
    }
}

fn compare(asked: Option<&str>, live: Option<&str>, same: fn(&str, &str) -> bool) -> Cell {
    match (asked, live) {
        (_, None) => Cell::na("not collected"),
        (None, Some(l)) => Cell::na(l),
        (Some(a), Some(l)) => Cell::judge(l, same(a, l)),
    }
}

fn sysctl(inputs: &Inputs, notes: &mut Vec<String>) -> Vec<Compare> {
    let live = inputs.fact("sysctl.txt").map(|t| facts::sysctl(&t));
    if live.is_none() {
        notes.push("facts/sysctl.txt missing: live sysctl values not collected".into());
    }
    let mut asked: BTreeMap<String, (String, String)> = BTreeMap::new();
    for option in ["sysctl", "sysctl_extra"] {
        let Some(map) = inputs
            .config("os_hardening", option)
            .and_then(Value::as_object)
        else {
            continue;
        };
        for (k, v) in map {
            asked.insert(
                k.clone(),
                (option_text(v), format!("os_hardening.{option}")),
            );
        }
    }
    asked
        .into_iter()
        .map(|(key, (want, source))| {
            let got = live
                .as_ref()
                .map(|l| l.get(&key).cloned().unwrap_or_else(|| "(absent)".into()));
            Compare {
                live: compare(Some(&want), got.as_deref(), |a, b| a.trim() == b.trim()),
                name: key,
                source,
                asked: want,
            }
        })
        .collect()
}

fn firewall(inputs: &Inputs, notes: &mut Vec<String>) -> Vec<ChainRow> {
    let mut rows = Vec::new();
    for (family, fact, rendered) in [
        ("IPv4", "iptables-v4.txt", "etc/iptables/rules.v4"),
        ("IPv6", "iptables-v6.txt", "etc/iptables/rules.v6"),
    ] {
        let live = inputs.fact(fact).map(|t| facts::iptables(&t));
        let asked = inputs.overlay_file(rendered).map(|t| facts::iptables(&t));
        if live.is_none() {
            notes.push(format!(
                "facts/{fact} missing: live {family} rules not collected"
            ));
        }
        if asked.is_none() {
            notes.push(format!("the rendered /{rendered} is not in the build folder: nothing to compare {family} with"));
        }
        rows.extend(chain_rows(family, live.as_ref(), asked.as_ref()));
    }
    rows
}

type Chains = BTreeMap<(String, String), facts::Chain>;

fn chain_rows(family: &str, live: Option<&Chains>, asked: Option<&Chains>) -> Vec<ChainRow> {
    let keys: BTreeSet<&(String, String)> = live
        .iter()
        .chain(asked.iter())
        .flat_map(|c| c.keys())
        .collect();
    keys.into_iter()
        .map(|key| {
            let want = asked.and_then(|a| a.get(key));
            let got = live.and_then(|l| l.get(key));
            ChainRow {
                family: family.into(),
                table: key.0.clone(),
                chain: key.1.clone(),
                asked_policy: want.map_or("—".into(), |w| w.policy.clone()),
                asked_rules: want.map_or("—".into(), |w| w.rules.to_string()),
                policy: policy_cell(want, got, live.is_some()),
                rules: rules_cell(want, got, live.is_some()),
            }
        })
        .collect()
}

fn policy_cell(want: Option<&facts::Chain>, got: Option<&facts::Chain>, collected: bool) -> Cell {
    match (want, got) {
        (_, None) if !collected => Cell::na("not collected"),
        (Some(_), None) => Cell::bad("chain missing"),
        (None, Some(g)) => Cell::na(&format!("{} (added at run time)", g.policy)),
        (Some(w), Some(g)) => Cell::judge(&g.policy, w.policy == g.policy),
        (None, None) => Cell::na("—"),
    }
}

/// A different rule count is a warning, not a failure: CrowdSec's bouncer
/// adds its own rules at run time; the acceptance test judges the effect.
fn rules_cell(want: Option<&facts::Chain>, got: Option<&facts::Chain>, collected: bool) -> Cell {
    match (want, got) {
        (_, None) if !collected => Cell::na("not collected"),
        (Some(_), None) => Cell::bad("chain missing"),
        (None, Some(g)) => Cell::na(&g.rules.to_string()),
        (Some(w), Some(g)) if w.rules == g.rules => Cell::ok(&g.rules.to_string()),
        (Some(_), Some(g)) => Cell::warn(&g.rules.to_string()),
        (None, None) => Cell::na("—"),
    }
}

const VERSIONS: &[&str] = &["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];

/// What the rendered configuration asks of one TLS port.
struct TlsPolicy {
    source: String,
    versions: Vec<String>,
    ciphers: Vec<String>,
}

fn tls(inputs: &Inputs, notes: &mut Vec<String>) -> Vec<TlsRow> {
    // Ours (facts/tls.txt) and the acceptance test's tls-probe.py (tls-*.txt).
    let mut all: Vec<facts::Handshake> = inputs
        .fact("tls.txt")
        .map(|t| facts::tls(&t))
        .unwrap_or_default();
    for text in inputs.run_files("tls-", ".txt") {
        all.extend(facts::tls_findings(&text));
    }
    if all.is_empty() {
        notes.push("neither facts/tls.txt nor tls-*.txt: TLS handshakes not probed".into());
        return Vec::new();
    }
    let mut ports: BTreeMap<(u32, String), Vec<facts::Handshake>> = BTreeMap::new();
    for h in all {
        ports.entry((h.port, h.mode.clone())).or_default().push(h);
    }
    ports
        .into_iter()
        .map(|((port, mode), hs)| tls_row(port, mode, &hs, &policy_for(inputs, port)))
        .collect()
}

fn tls_row(port: u32, mode: String, hs: &[facts::Handshake], p: &TlsPolicy) -> TlsRow {
    let known = !p.versions.is_empty();
    let versions = VERSIONS
        .iter()
        .filter_map(|v| {
            let tried: Vec<_> = hs.iter().filter(|h| h.version == *v).collect();
            if tried.is_empty() {
                return None;
            }
            let accepted = tried.iter().any(|h| h.accepted);
            let label = format!("{v} {}", if accepted { "accepted" } else { "refused" });
            let wanted = p.versions.iter().any(|w| w == v);
            Some(if known {
                Cell::judge(&label, accepted == wanted)
            } else {
                Cell::na(&label)
            })
        })
        .collect();
    let seen: BTreeSet<&str> = hs
        .iter()
        .filter(|h| h.accepted)
        .filter_map(|h| h.cipher.as_deref())
        .collect();
    let ciphers = seen
        .into_iter()
        .map(|c| {
            // TLS 1.3 suites (TLS_*) are not set by the TLS 1.2 cipher lists.
            if p.ciphers.is_empty() || c.starts_with("TLS_") {
                Cell::na(c)
            } else {
                Cell::judge(c, p.ciphers.iter().any(|w| w == c))
            }
        })
        .collect();
    TlsRow {
        port,
        mode,
        source: p.source.clone(),
        asked_versions: or_dash(p.versions.join(" ")),
        versions,
        asked_ciphers: or_dash(p.ciphers.join(" ")),
        ciphers,
    }
}

fn or_dash(s: String) -> String {
    if s.is_empty() { "—".into() } else { s }
}

/// nginx owns 443; ejabberd every other TLS port (s2s ports with its s2s list).
fn policy_for(inputs: &Inputs, port: u32) -> TlsPolicy {
    let https = inputs
        .config("nginx", "https_port")
        .and_then(Value::as_u64)
        .unwrap_or(443);
    if u64::from(port) == https {
        return nginx_policy(inputs);
    }
    let s2s = ["s2s_port", "s2s_tls_port"]
        .iter()
        .filter_map(|o| inputs.config("ejabberd", o).and_then(Value::as_u64))
        .any(|p| p == u64::from(port));
    ejabberd_policy(inputs, if s2s { "S2S_CIPHERS" } else { "C2S_CIPHERS" })
}

fn nginx_policy(inputs: &Inputs) -> TlsPolicy {
    let conf = inputs
        .overlay_file("etc/nginx/nginx.conf")
        .unwrap_or_default();
    let directive = |name: &str| -> Vec<String> {
        conf.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(name))
            .map(|v| {
                v.trim()
                    .trim_end_matches(';')
                    .split([' ', ':'])
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    TlsPolicy {
        source: "/etc/nginx/nginx.conf".into(),
        versions: directive("ssl_protocols "),
        ciphers: directive("ssl_ciphers "),
    }
}

/// ejabberd names what it refuses (`no_tlsv1`...); the rest of 1.0–1.3 is allowed.
fn ejabberd_policy(inputs: &Inputs, macro_name: &str) -> TlsPolicy {
    let conf = inputs
        .overlay_file("etc/ejabberd/ejabberd.yml")
        .unwrap_or_default();
    let source = format!("/etc/ejabberd/ejabberd.yml ({macro_name})");
    if conf.is_empty() {
        return TlsPolicy {
            source,
            versions: Vec::new(),
            ciphers: Vec::new(),
        };
    }
    let refused =
        |flag: &str| conf.contains(&format!("\"{flag}\"")) || conf.contains(&format!("- {flag}\n"));
    let versions = [
        ("TLSv1", "no_tlsv1"),
        ("TLSv1.1", "no_tlsv1_1"),
        ("TLSv1.2", "no_tlsv1_2"),
        ("TLSv1.3", "no_tlsv1_3"),
    ]
    .iter()
    .filter(|(_, flag)| !refused(flag))
    .map(|(v, _)| v.to_string())
    .collect();
    let ciphers = conf
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(&format!("{macro_name}:")))
        .map(|v| {
            v.trim()
                .trim_matches('"')
                .split(':')
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    TlsPolicy {
        source,
        versions,
        ciphers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(version: &str, accepted: bool, cipher: Option<&str>) -> facts::Handshake {
        facts::Handshake {
            port: 443,
            mode: "tls".into(),
            version: version.into(),
            accepted,
            cipher: cipher.map(String::from),
        }
    }

    #[test]
    fn tls_versions_and_ciphers_are_judged() {
        let p = TlsPolicy {
            source: "x".into(),
            versions: vec!["TLSv1.2".into(), "TLSv1.3".into()],
            ciphers: vec!["ECDHE-ECDSA-AES256-GCM-SHA384".into()],
        };
        let row = tls_row(
            443,
            "tls".into(),
            &[
                hs("TLSv1.1", true, Some("ECDHE-RSA-AES128-SHA")),
                hs("TLSv1.2", true, Some("ECDHE-ECDSA-AES256-GCM-SHA384")),
                hs("TLSv1.3", false, None),
            ],
            &p,
        );
        let states: Vec<&str> = row.versions.iter().map(|c| c.state).collect();
        assert_eq!(states, ["bad", "ok", "bad"]);
        let bad: Vec<&str> = row
            .ciphers
            .iter()
            .filter(|c| c.state == "bad")
            .map(|c| c.text.as_str())
            .collect();
        assert_eq!(bad, ["ECDHE-RSA-AES128-SHA"]);
    }

    #[test]
    fn prohibit_password_has_two_names() {
        assert!(sshd_same("prohibit-password", "without-password"));
        assert!(!sshd_same("no", "without-password"));
    }
}
