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
    pub asked_groups: String,
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

/// The ssh module's `effective` list (key, value, set_by) against the guest's `sshd -T`.
fn sshd(inputs: &Inputs, notes: &mut Vec<String>) -> Vec<Compare> {
    let live = inputs.fact("sshd-T.txt").map(|t| facts::sshd(&t));
    if live.is_none() {
        notes.push("facts/sshd-T.txt missing: effective sshd settings not collected".into());
    }
    let Some(wanted) = inputs.config("ssh", "effective").and_then(Value::as_array) else {
        notes.push("no ssh.effective in config.json: nothing to compare sshd -T with".into());
        return Vec::new();
    };
    wanted
        .iter()
        .filter_map(|w| {
            let key = text(w.get("key")?);
            let asked = w.get("value").map(text);
            let got = live
                .as_ref()
                .map(|l| l.get(&key).cloned().unwrap_or_else(|| "(absent)".into()));
            Some(Compare {
                source: w.get("set_by").map(text).unwrap_or_default(),
                live: compare(asked.as_deref(), got.as_deref(), sshd_same),
                asked: asked.unwrap_or_else(|| "—".into()),
                name: key,
            })
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

/// What a TLS port was asked to serve: the tls module's policy (config.json
/// `tls.*`) when the port's row in firewall.listeners declares TLS.
struct TlsPolicy {
    source: String,
    versions: Vec<String>,
    /// TLS 1.2 suites and TLS 1.3 suites, judged apart.
    ciphers: Vec<String>,
    suites: Vec<String>,
    groups: Vec<String>,
}

impl TlsPolicy {
    /// The policy as config.json holds it; `None` without a tls module.
    fn from_config(inputs: &Inputs) -> Option<TlsPolicy> {
        let list = |option: &str| -> Option<Vec<String>> {
            Some(
                inputs
                    .config("tls", option)?
                    .as_array()?
                    .iter()
                    .map(text)
                    .collect(),
            )
        };
        Some(TlsPolicy {
            source: "tls.protocols, tls.ciphers, tls.ciphersuites, tls.groups".into(),
            versions: list("protocols")?,
            ciphers: list("ciphers").unwrap_or_default(),
            suites: list("ciphersuites").unwrap_or_default(),
            groups: list("groups").unwrap_or_default(),
        })
    }

    /// Nothing to judge against: a port no listener declares as TLS, or no policy.
    fn none(source: String) -> TlsPolicy {
        TlsPolicy {
            source,
            versions: Vec::new(),
            ciphers: Vec::new(),
            suites: Vec::new(),
            groups: Vec::new(),
        }
    }
}

/// How firewall.listeners declares a TCP port's TLS (`tls`, `starttls`), if a row covers it.
fn declared_tls(inputs: &Inputs, port: u32) -> Option<(String, String)> {
    inputs
        .config("firewall", "listeners")?
        .as_array()?
        .iter()
        .find(|l| {
            let first = l.get("port").and_then(Value::as_u64).unwrap_or(0);
            let last = l.get("port_end").and_then(Value::as_u64).unwrap_or(0);
            l.get("proto").and_then(Value::as_str) == Some("tcp")
                && (first..=last.max(first)).contains(&u64::from(port))
        })
        .map(|l| {
            (
                l.get("tls").map(text).unwrap_or_else(|| "none".into()),
                l.get("starttls").map(text).unwrap_or_default(),
            )
        })
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
    let policy = TlsPolicy::from_config(inputs);
    if policy.is_none() {
        notes.push(
            "no tls.protocols in config.json: no TLS policy to judge the handshakes by".into(),
        );
    }
    let mut ports: BTreeMap<(u32, String), Vec<facts::Handshake>> = BTreeMap::new();
    for h in all {
        ports.entry((h.port, h.mode.clone())).or_default().push(h);
    }
    ports
        .into_iter()
        .map(|((port, mode), hs)| {
            let unjudged;
            let p = match (declared_tls(inputs, port), &policy) {
                (Some((tls, _)), Some(p)) if tls != "none" => p,
                (Some(_), _) | (None, None) => {
                    unjudged = TlsPolicy::none(
                        "not declared as TLS in firewall.listeners (its tls column)".into(),
                    );
                    &unjudged
                }
                (None, Some(_)) => {
                    unjudged = TlsPolicy::none("no row of firewall.listeners".into());
                    &unjudged
                }
            };
            tls_row(port, mode, &hs, p)
        })
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
            // TLS 1.3 suites (TLS_*) are set by their own list.
            let wanted = if c.starts_with("TLS_") {
                &p.suites
            } else {
                &p.ciphers
            };
            if known {
                Cell::judge(c, wanted.iter().any(|w| w == c))
            } else {
                Cell::na(c)
            }
        })
        .collect();
    TlsRow {
        port,
        mode,
        source: p.source.clone(),
        asked_versions: or_dash(p.versions.join(" ")),
        versions,
        asked_ciphers: or_dash(
            [p.ciphers.join(" "), p.suites.join(" ")]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        asked_groups: or_dash(p.groups.join(" ")),
        ciphers,
    }
}

fn or_dash(s: String) -> String {
    if s.is_empty() { "—".into() } else { s }
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
            suites: vec!["TLS_AES_256_GCM_SHA384".into()],
            groups: vec!["secp384r1".into()],
        };
        let row = tls_row(
            443,
            "tls".into(),
            &[
                hs("TLSv1.1", true, Some("ECDHE-RSA-AES128-SHA")),
                hs("TLSv1.2", true, Some("ECDHE-ECDSA-AES256-GCM-SHA384")),
                hs("TLSv1.3", true, Some("TLS_AES_128_GCM_SHA256")),
            ],
            &p,
        );
        let states: Vec<&str> = row.versions.iter().map(|c| c.state).collect();
        assert_eq!(states, ["bad", "ok", "ok"]);
        let bad: Vec<&str> = row
            .ciphers
            .iter()
            .filter(|c| c.state == "bad")
            .map(|c| c.text.as_str())
            .collect();
        // A TLS 1.3 suite is judged by tls.ciphersuites, not by the 1.2 list.
        assert_eq!(bad, ["ECDHE-RSA-AES128-SHA", "TLS_AES_128_GCM_SHA256"]);
    }

    #[test]
    fn prohibit_password_has_two_names() {
        assert!(sshd_same("prohibit-password", "without-password"));
        assert!(!sshd_same("no", "without-password"));
    }
}
