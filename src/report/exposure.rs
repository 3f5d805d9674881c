//! Section 2: the exposure matrix. Every declared listener (config.json's
//! firewall.listeners) against what the VM test measured: listening in the
//! guest (exposure.json, else facts/ss.txt), reachable from the trusted and
//! from the untrusted client (exposure.json). Sockets listening on a port no
//! listener declares become red rows of their own.
use super::facts::{self, Socket};
use super::identity::text;
use super::inputs::Inputs;
use super::page::Cell;
use crate::exposure::{Rule, Table, Who};
use serde::Serialize;
use serde_json::Value;

#[derive(Serialize)]
pub struct Matrix {
    pub rows: Vec<Row>,
    pub undeclared: Vec<Undeclared>,
    /// Datagrams relayed through the machine's TURN service (OUT/turn/).
    pub relays: Vec<Relay>,
    /// Which inputs were missing, in words for the page.
    pub notes: Vec<String>,
    pub bad: usize,
}

#[derive(Serialize)]
pub struct Row {
    pub port: String,
    pub proto: String,
    pub service: String,
    pub description: String,
    pub exposure: String,
    /// The row's tls column: "direct", "starttls PROTOCOL" or "—".
    pub tls: String,
    pub listening: Cell,
    pub trusted: Cell,
    pub untrusted: Cell,
}

#[derive(Serialize)]
pub struct Undeclared {
    pub port: String,
    pub proto: String,
    pub addresses: String,
    pub process: String,
}

/// One TURN relay a test client allocated and used: what `turn.py relay`
/// printed (OUT/turn/NAME.json, docs/testing.md "STUN and TURN").
#[derive(Serialize)]
pub struct Relay {
    pub name: String,
    pub via: String,
    pub relayed: String,
    pub peer: String,
    pub exchanged: String,
    pub state: &'static str,
}

/// A declared listener, as the firewall module's option holds it.
struct Declared {
    port: u32,
    port_end: u32,
    proto: String,
    service: String,
    description: String,
    exposure: String,
    /// none, direct or starttls (the protocol follows: "starttls xmpp").
    tls: String,
    /// Addresses the service binds; empty = every address.
    bind: Vec<String>,
    /// What its exposure allows (firewall.exposure_rules, the one rule).
    rule: Option<Rule>,
}

impl Declared {
    fn covers(&self, proto: &str, port: u32) -> bool {
        self.proto == proto && port >= self.port && port <= self.port_end.max(self.port)
    }

    fn is_range(&self) -> bool {
        self.port_end > self.port
    }

    fn binds_family(&self, v6: bool) -> bool {
        crate::exposure::binds_family(&self.bind, v6)
    }
}

/// What each exposure means for the three measurements.
struct Expect {
    listening: Option<bool>,
    trusted: bool,
    untrusted: bool,
}

fn expect(d: &Declared) -> Expect {
    // Without a rule (a build older than firewall.exposure_rules) nothing is
    // expected; collect() says so in a note.
    let (listening, trusted, untrusted) = d.rule.as_ref().map_or((false, false, false), |r| {
        (r.listens, r.from != Who::Nobody, r.from == Who::Anyone)
    });
    Expect {
        // Nothing listens on a relay range until a client asks for a relay.
        listening: (!d.is_range()).then_some(listening),
        trusted,
        untrusted,
    }
}

pub fn collect(inputs: &Inputs) -> Matrix {
    let mut notes = Vec::new();
    let declared = declared(inputs, &mut notes);
    // The acceptance test keeps its first boot's sockets in boot-1/.
    let sockets = inputs
        .fact("ss.txt")
        .or_else(|| inputs.run_file("boot-1/ss.txt"))
        .map(|t| facts::sockets(&t));
    let measured = measured(inputs, &mut notes);
    if sockets.is_none() {
        notes.push("facts/ss.txt missing: listening sockets only from exposure.json".into());
    }
    let rows: Vec<Row> = declared
        .iter()
        .map(|d| row(d, measured.as_deref(), sockets.as_deref()))
        .collect();
    let reported = inputs
        .exposure
        .as_ref()
        .and_then(|e| e.get("undeclared"))
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    // Without a declared table every socket would look undeclared: say nothing.
    let undeclared = if declared.is_empty() {
        Vec::new()
    } else {
        undeclared(&declared, reported, sockets.as_deref())
    };
    let relays = relays(inputs);
    let bad = rows
        .iter()
        .map(|r| {
            [&r.listening, &r.trusted, &r.untrusted]
                .iter()
                .filter(|c| c.state == "bad")
                .count()
        })
        .sum::<usize>()
        + undeclared.len()
        + relays.iter().filter(|r| r.state == "bad").count();
    Matrix {
        rows,
        undeclared,
        relays,
        notes,
        bad,
    }
}

/// Every OUT/turn/*.json that records a relay (has `relayed` or `ok`), in name order.
fn relays(inputs: &Inputs) -> Vec<Relay> {
    let Ok(entries) = std::fs::read_dir(inputs.run.join("turn")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
        .iter()
        .filter_map(|n| {
            let v: Value = serde_json::from_str(&inputs.run_file(&format!("turn/{n}"))?).ok()?;
            v.get("relayed").or(v.get("error"))?;
            Some(relay(n.trim_end_matches(".json"), &v))
        })
        .collect()
}

fn relay(name: &str, v: &Value) -> Relay {
    let addr = |k: &str| match v.get(k).and_then(Value::as_array).map(Vec::as_slice) {
        Some([ip, port]) if text(ip).contains(':') => format!("[{}]:{}", text(ip), port),
        Some([ip, port]) => format!("{}:{}", text(ip), port),
        _ => "-".into(),
    };
    let ok = v.get("ok").and_then(Value::as_bool) == Some(true);
    let exchanged = v
        .get("exchanged")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(text).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    Relay {
        name: name.into(),
        via: format!(
            "{} {} {}",
            v.get("transport").map(text).unwrap_or_default(),
            v.get("server").map(text).unwrap_or_default(),
            v.get("port").map(text).unwrap_or_default()
        ),
        relayed: addr("relayed"),
        peer: addr("peer"),
        exchanged: if ok {
            exchanged
        } else {
            v.get("error").map(text).unwrap_or_default()
        },
        state: if ok { "ok" } else { "bad" },
    }
}

fn declared(inputs: &Inputs, notes: &mut Vec<String>) -> Vec<Declared> {
    let Some(list) = inputs
        .config("firewall", "listeners")
        .and_then(Value::as_array)
    else {
        notes.push("no firewall.listeners in config.json: nothing declared to compare with".into());
        return Vec::new();
    };
    let table = inputs
        .build
        .config
        .as_ref()
        .map(Table::from_config)
        .transpose()
        .unwrap_or_else(|e| {
            notes.push(format!("cannot judge by the exposure rule: {e}"));
            None
        });
    let rule = |exposure: &str| {
        table
            .as_ref()
            .and_then(|t| t.rules.iter().find(|r| r.exposure == exposure).cloned())
    };
    list.iter()
        .filter_map(|l| {
            let exposure = l.get("exposure").map(text).unwrap_or_default();
            Some(Declared {
                rule: rule(&exposure),
                port: u32::try_from(l.get("port")?.as_u64()?).ok()?,
                port_end: l
                    .get("port_end")
                    .and_then(Value::as_u64)
                    .and_then(|p| u32::try_from(p).ok())
                    .unwrap_or(0),
                proto: l.get("proto").map(text).unwrap_or_default(),
                service: l.get("service").map(text).unwrap_or_default(),
                description: l.get("description").map(text).unwrap_or_default(),
                exposure,
                tls: [l.get("tls"), l.get("starttls")]
                    .into_iter()
                    .flatten()
                    .map(text)
                    .filter(|t| !t.is_empty() && t != "none")
                    .collect::<Vec<_>>()
                    .join(" "),
                bind: l
                    .get("bind")
                    .and_then(Value::as_array)
                    .map(|b| b.iter().map(text).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn measured(inputs: &Inputs, notes: &mut Vec<String>) -> Option<Vec<Value>> {
    let Some(doc) = &inputs.exposure else {
        notes.push("exposure.json missing: reachability from the clients was not measured".into());
        return None;
    };
    Some(
        doc.get("listeners")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    )
}

fn find<'a>(measured: Option<&'a [Value]>, d: &Declared) -> Option<&'a Value> {
    measured?.iter().find(|m| {
        m.get("port").and_then(Value::as_u64) == Some(u64::from(d.port))
            && m.get("proto").and_then(Value::as_str) == Some(d.proto.as_str())
    })
}

fn row(d: &Declared, measured: Option<&[Value]>, sockets: Option<&[Socket]>) -> Row {
    let want = expect(d);
    let m = find(measured, d);
    Row {
        port: if d.is_range() {
            format!("{}–{}", d.port, d.port_end)
        } else {
            d.port.to_string()
        },
        proto: d.proto.clone(),
        service: d.service.clone(),
        description: d.description.clone(),
        exposure: d.exposure.clone(),
        tls: if d.tls.is_empty() {
            "—".into()
        } else {
            d.tls.clone()
        },
        listening: listening_cell(d, &want, m, sockets),
        trusted: reach_cell(d, m, "trusted", want.trusted),
        untrusted: reach_cell(d, m, "untrusted", want.untrusted),
    }
}

fn listening_cell(
    d: &Declared,
    want: &Expect,
    m: Option<&Value>,
    sockets: Option<&[Socket]>,
) -> Cell {
    let found: Option<Vec<&Socket>> =
        sockets.map(|s| s.iter().filter(|s| d.covers(&s.proto, s.port)).collect());
    let from_json = m.and_then(|m| m.get("listening")).and_then(Value::as_bool);
    let is = from_json.or(found.as_ref().map(|f| !f.is_empty()));
    let Some(is) = is else {
        return Cell::na("not measured");
    };
    let addrs = match &found {
        Some(f) => f
            .iter()
            .map(|s| s.addr.clone())
            .collect::<Vec<_>>()
            .join(", "),
        None => m
            .and_then(|m| m.get("listening_on"))
            .and_then(Value::as_array)
            .map(|a| a.iter().map(text).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
    };
    let label = match (is, addrs.is_empty()) {
        (true, false) => format!("yes: {addrs}"),
        (true, true) => "yes".into(),
        (false, _) => "no".into(),
    };
    // A localhost listener bound to anything but loopback is exposed by its bind.
    let wide = d.rule.as_ref().is_some_and(Rule::loopback_only)
        && found
            .as_ref()
            .is_some_and(|f| f.iter().any(|s| !s.loopback()));
    match want.listening {
        None => Cell::na(&label),
        Some(_) if wide => Cell::bad(&format!("{label} (not loopback)")),
        Some(w) => Cell::judge(&label, is == w),
    }
}

/// One client's reachability over v4 and v6. Two shapes are read: flat
/// (`trusted`, `trusted_v6`) and nested (`reachable.trusted.ipv4`). For a
/// port range nothing listens, so what counts is whether the firewall let
/// the probe through (`passes_firewall`, nested shape only).
fn reach_cell(d: &Declared, m: Option<&Value>, who: &str, want: bool) -> Cell {
    let key = if d.is_range() {
        "passes_firewall"
    } else {
        "reachable"
    };
    let nested = |fam: &str| m?.get(key)?.get(who)?.get(fam)?.as_bool();
    let flat = |k: String| m?.get(k)?.as_bool();
    let flat_ok = !d.is_range();
    let v4 = nested("ipv4").or_else(|| flat_ok.then(|| flat(who.to_string())).flatten());
    let v6 = nested("ipv6").or_else(|| flat_ok.then(|| flat(format!("{who}_v6"))).flatten());
    let want_fam = |v6: bool| want && (d.is_range() || d.binds_family(v6));
    let word = |b: bool| if b { "yes" } else { "no" };
    match (v4, v6) {
        (None, None) => Cell::na("not measured"),
        (Some(a), None) => Cell::judge(word(a), a == want_fam(false)),
        (None, Some(b)) => Cell::judge(&format!("v6 {}", word(b)), b == want_fam(true)),
        (Some(a), Some(b)) => Cell::judge(
            &format!("v4 {} · v6 {}", word(a), word(b)),
            a == want_fam(false) && b == want_fam(true),
        ),
    }
}

/// Listening sockets on ports no listener declares: from exposure.json's
/// `undeclared` and from facts/ss.txt, merged by (proto, port).
fn undeclared(
    declared: &[Declared],
    reported: &[Value],
    sockets: Option<&[Socket]>,
) -> Vec<Undeclared> {
    let from_json = reported.iter().filter_map(|v| {
        Some(Socket {
            proto: v.get("proto").map(text).unwrap_or_default(),
            addr: v.get("address").map(text).unwrap_or_default(),
            port: u32::try_from(v.get("port")?.as_u64()?).ok()?,
            process: v.get("process").map(text).unwrap_or_default(),
        })
    });
    let all: Vec<Socket> = sockets
        .unwrap_or_default()
        .iter()
        .cloned()
        .chain(from_json)
        .collect();
    let mut out: std::collections::BTreeMap<(String, u32), Undeclared> = Default::default();
    for s in &all {
        if declared.iter().any(|d| d.covers(&s.proto, s.port)) {
            continue;
        }
        let e = out
            .entry((s.proto.clone(), s.port))
            .or_insert_with(|| Undeclared {
                port: s.port.to_string(),
                proto: s.proto.clone(),
                addresses: String::new(),
                process: s.process.clone(),
            });
        if e.addresses.split(", ").any(|a| a == s.addr) {
            continue;
        }
        if !e.addresses.is_empty() {
            e.addresses.push_str(", ");
        }
        e.addresses.push_str(&s.addr);
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(port: u32, proto: &str, exposure: &str) -> Declared {
        Declared {
            port,
            port_end: 0,
            proto: proto.into(),
            service: "s".into(),
            description: String::new(),
            exposure: exposure.into(),
            tls: String::new(),
            bind: Vec::new(),
            rule: Some(rule(exposure)),
        }
    }

    /// The firewall module's default rule for one exposure (as config.json holds it).
    fn rule(exposure: &str) -> Rule {
        let (from, bind, listens) = match exposure {
            "public" => ("anyone", "any", true),
            "trusted" => ("trusted", "any", true),
            "localhost" => ("nobody", "loopback", true),
            _ => ("nobody", "any", false),
        };
        serde_json::from_value(serde_json::json!({"exposure": exposure, "from": from, "bind": bind, "listens": listens})).unwrap()
    }

    fn sock(addr: &str, port: u32) -> Socket {
        Socket {
            proto: "tcp".into(),
            addr: addr.into(),
            port,
            process: String::new(),
        }
    }

    #[test]
    fn localhost_on_a_wildcard_is_red() {
        let decl = d(5432, "tcp", "localhost");
        let want = expect(&decl);
        let ok = listening_cell(&decl, &want, None, Some(&[sock("127.0.0.1", 5432)]));
        assert_eq!(ok.state, "ok");
        let wide = listening_cell(&decl, &want, None, Some(&[sock("0.0.0.0", 5432)]));
        assert_eq!(wide.state, "bad");
    }

    #[test]
    fn blocked_listening_is_red_and_undeclared_found() {
        let decl = vec![d(4369, "tcp", "blocked"), d(22, "tcp", "trusted")];
        let socks = [
            sock("0.0.0.0", 4369),
            sock("0.0.0.0", 22),
            sock("0.0.0.0", 8080),
        ];
        let want = expect(&decl[0]);
        assert_eq!(
            listening_cell(&decl[0], &want, None, Some(&socks)).state,
            "bad"
        );
        let u = undeclared(&decl, &[], Some(&socks));
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].port, "8080");
    }

    #[test]
    fn relays_shown_and_a_failed_one_is_red() {
        let ok: Value = serde_json::json!({"server": "fd77::10", "port": 3478, "transport": "udp",
            "relayed": ["fd77::10", 50000], "peer": ["fd77::20", 4000],
            "exchanged": ["data", "channel"], "ok": true});
        let r = relay("udp-v6", &ok);
        assert_eq!(
            (r.via.as_str(), r.relayed.as_str(), r.peer.as_str()),
            ("udp fd77::10 3478", "[fd77::10]:50000", "[fd77::20]:4000")
        );
        assert_eq!((r.exchanged.as_str(), r.state), ("data, channel", "ok"));
        let failed: Value = serde_json::json!({"ok": false, "error": "StunError: 401"});
        let r = relay("tls-v4", &failed);
        assert_eq!(
            (r.relayed.as_str(), r.exchanged.as_str(), r.state),
            ("-", "StunError: 401", "bad")
        );
    }

    #[test]
    fn reachability_judged_per_family() {
        let ssh = d(22, "tcp", "trusted");
        let m: Value =
            serde_json::json!({"trusted": true, "trusted_v6": false, "untrusted": false});
        assert_eq!(reach_cell(&ssh, Some(&m), "trusted", true).state, "bad");
        assert_eq!(reach_cell(&ssh, Some(&m), "untrusted", false).state, "ok");
        assert_eq!(reach_cell(&ssh, None, "untrusted", false).state, "na");
        // The nested shape, and a v4-only bind that v6 cannot reach.
        let mut admin = d(6443, "tcp", "trusted");
        admin.bind = vec!["192.168.77.10".into()];
        let m: Value = serde_json::json!({"reachable": {"trusted": {"ipv4": true, "ipv6": false}}});
        assert_eq!(reach_cell(&admin, Some(&m), "trusted", true).state, "ok");
        assert_eq!(reach_cell(&ssh, Some(&m), "trusted", true).state, "bad");
        // A relay range is judged by the firewall, not by a listener.
        let mut relay = d(49152, "udp", "public");
        relay.port_end = 65535;
        let m: Value = serde_json::json!({"reachable": {"untrusted": {"ipv4": false}},
            "passes_firewall": {"untrusted": {"ipv4": true}}});
        assert_eq!(reach_cell(&relay, Some(&m), "untrusted", true).state, "ok");
    }
}
