//! The exposure table and the one rule for what each exposure allows, read
//! from a build's config.json: `firewall.listeners` (every listening socket)
//! and `firewall.exposure_rules` (per exposure: who may connect, whether the
//! firewall drops silently, whether the socket must bind loopback, whether
//! anything may listen). The same data renders the iptables rules and the
//! in-guest port audit (modules/firewall, modules/audit); here it judges what
//! the VM test measured: the driver's `probe_exposure` and the report's
//! exposure matrix both call these functions.
//!
//! The exposure matrix (OUT/exposure.json) is [`Matrix`]: written by the
//! driver, read by the report (docs/testing.md, "The exposure matrix").
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Who may connect through the firewall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Who {
    Anyone,
    Trusted,
    Nobody,
}

/// What one exposure allows (a record of `firewall.exposure_rules`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rule {
    pub exposure: String,
    pub from: Who,
    /// An explicit DROP (silence) rather than the final REJECT.
    #[serde(default)]
    pub drop: bool,
    /// "loopback": the socket must bind loopback only; "any" otherwise.
    #[serde(default)]
    pub bind: String,
    #[serde(default = "yes")]
    pub listens: bool,
}

fn yes() -> bool {
    true
}

impl Rule {
    pub fn loopback_only(&self) -> bool {
        self.bind == "loopback"
    }
}

/// A declared listener (a record of `firewall.listeners`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Listener {
    pub service: String,
    pub proto: String,
    pub port: u16,
    #[serde(default)]
    pub port_end: u16,
    pub exposure: String,
    /// Addresses the service binds; empty = every address.
    #[serde(default)]
    pub bind: Vec<String>,
    #[serde(default, skip_serializing)]
    pub description: String,
    /// "none" | "direct" | "starttls" (module tls; absent in older builds).
    #[serde(default, skip_serializing)]
    pub tls: Option<String>,
    /// The `openssl s_client -starttls` protocol when tls = "starttls".
    #[serde(default, skip_serializing)]
    pub starttls: Option<String>,
}

impl Listener {
    pub fn is_range(&self) -> bool {
        self.port_end > self.port
    }

    pub fn last_port(&self) -> u16 {
        self.port_end.max(self.port)
    }

    pub fn covers(&self, proto: &str, port: u16) -> bool {
        self.proto == proto && port >= self.port && port <= self.last_port()
    }

    /// The ports a probe tries: a range at both ends (nothing listens there
    /// until a client asks, so the answer shows what the firewall does).
    pub fn probe_ports(&self) -> Vec<u16> {
        if self.is_range() {
            vec![self.port, self.port_end]
        } else {
            vec![self.port]
        }
    }

    /// [`binds_family`] of this listener's bind.
    pub fn binds_family(&self, v6: bool) -> bool {
        binds_family(&self.bind, v6)
    }

    pub fn label(&self) -> String {
        let port = if self.is_range() {
            format!("{}-{}", self.port, self.port_end)
        } else {
            self.port.to_string()
        };
        format!("{} {port}/{} ({})", self.service, self.proto, self.exposure)
    }
}

/// Whether sockets bound to `bind` (empty = every address) accept
/// connections on the server's address of a family: a listener bound to an
/// IPv4 address only cannot be reached over IPv6 even where the firewall lets
/// it through. `::` is dual-stack.
pub fn binds_family(bind: &[String], v6: bool) -> bool {
    bind.is_empty()
        || bind.iter().any(|b| match b.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => ip.is_ipv6() || !v6,
            Ok(ip) => !ip.is_loopback() && ip.is_ipv6() == v6,
            Err(_) => false,
        })
}

/// What a probe from a client host met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Probe {
    /// TCP: connected; UDP: a STUN Binding success naming the client's own address.
    Open,
    /// UDP: an answer, but not that one.
    OpenOther,
    /// The firewall let it through and the kernel answered "port closed".
    Refused,
    /// The firewall's REJECT (ICMP host/admin prohibited).
    Prohibited,
    /// No answer: a DROP (or a UDP service that did not answer).
    Silent,
    #[serde(untagged)]
    Error(String),
}

impl Probe {
    pub fn word(&self) -> &str {
        match self {
            Probe::Open => "open",
            Probe::OpenOther => "open-other",
            Probe::Refused => "refused",
            Probe::Prohibited => "prohibited",
            Probe::Silent => "silent",
            Probe::Error(e) => e,
        }
    }

    /// The packet reached the guest's network stack.
    pub fn passed_firewall(&self) -> bool {
        matches!(self, Probe::Open | Probe::OpenOther | Probe::Refused)
    }
}

/// The exposure table of one build with its rule and trusted networks.
#[derive(Debug, Clone)]
pub struct Table {
    pub listeners: Vec<Listener>,
    pub rules: Vec<Rule>,
    pub trusted: Vec<ipnet::IpNet>,
}

fn list<T: serde::de::DeserializeOwned>(fw: &Value, key: &str) -> Result<Vec<T>, String> {
    match fw.get(key) {
        None => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            format!("config.json: firewall.{key} is not as module firewall declares it: {e}")
        }),
    }
}

impl Table {
    /// From a build's config.json (the whole document).
    pub fn from_config(config: &Value) -> Result<Table, String> {
        let fw = config.get("firewall").ok_or(
            "config.json has no firewall options: the profile does not import module firewall",
        )?;
        let rules: Vec<Rule> = list(fw, "exposure_rules")?;
        if rules.is_empty() {
            return Err("config.json has no firewall.exposure_rules (a build older than the rule's move into module firewall): rebuild".into());
        }
        let mut trusted = Vec::new();
        for key in ["trusted_v4", "trusted_v6"] {
            for net in list::<String>(fw, key)? {
                trusted.push(net.parse().map_err(|e| {
                    format!("config.json: firewall.{key}: {net:?} is not a network: {e}")
                })?);
            }
        }
        let table = Table {
            listeners: list(fw, "listeners")?,
            rules,
            trusted,
        };
        for l in &table.listeners {
            table.rule(l)?;
        }
        Ok(table)
    }

    pub fn from_file(path: &std::path::Path) -> Result<Table, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
        Table::from_config(&v).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn rule(&self, l: &Listener) -> Result<&Rule, String> {
        self.rules
            .iter()
            .find(|r| r.exposure == l.exposure)
            .ok_or_else(|| {
                format!(
                    "{}: no firewall.exposure_rules record for exposure {:?}",
                    l.label(),
                    l.exposure
                )
            })
    }

    /// A source address inside firewall.trusted_v4 / trusted_v6.
    pub fn is_trusted(&self, source: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&source))
    }

    /// Whether the firewall lets a packet from `source` through to the listener.
    pub fn passes(&self, l: &Listener, source: IpAddr) -> bool {
        match self.rule(l).map(|r| r.from) {
            Ok(Who::Anyone) => true,
            Ok(Who::Trusted) => self.is_trusted(source),
            Ok(Who::Nobody) | Err(_) => false,
        }
    }

    /// What a probe from `source` to the server's address of `source`'s
    /// family may meet: the firewall stops it (REJECT or DROP, whatever the
    /// socket's bind), or it passes and then a range with nothing allocated
    /// refuses, a UDP port (STUN) answers, a TCP socket accepts where it
    /// binds that family and the kernel refuses where it does not.
    pub fn acceptable(&self, l: &Listener, source: IpAddr) -> Vec<Probe> {
        if !self.passes(l, source) {
            return vec![Probe::Prohibited, Probe::Silent];
        }
        if l.is_range() {
            return vec![Probe::Open, Probe::Refused];
        }
        if l.proto == "udp" {
            return vec![Probe::Open];
        }
        if l.binds_family(source.is_ipv6()) {
            vec![Probe::Open]
        } else {
            vec![Probe::Refused]
        }
    }

    /// What is wrong with a socket listening on `addr` for this listener.
    pub fn socket_problem(&self, l: &Listener, addr: &str) -> Option<String> {
        let rule = match self.rule(l) {
            Ok(r) => r,
            Err(e) => return Some(e),
        };
        let ip: Option<IpAddr> = addr.trim_start_matches("::ffff:").parse().ok();
        let wildcard = addr == "*" || ip.is_some_and(|i| i.is_unspecified());
        if !rule.listens {
            return Some(format!("nothing may listen ({} port)", l.exposure));
        }
        if rule.loopback_only() && !ip.is_some_and(|i| i.is_loopback()) {
            return Some(format!(
                "{} service bound to {addr}, not loopback",
                l.exposure
            ));
        }
        let in_bind = l.bind.is_empty()
            || l.bind.iter().any(|b| {
                b == addr || (wildcard && b.parse::<IpAddr>().is_ok_and(|i| i.is_unspecified()))
            });
        (!in_bind).then(|| format!("bound to {addr}, the table allows {}", l.bind.join(",")))
    }

    /// The listener a socket belongs to.
    pub fn find(&self, proto: &str, port: u16) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.covers(proto, port))
    }
}

/// Per address family.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Families<T> {
    pub ipv4: T,
    pub ipv6: T,
}

/// The server's addresses the clients probed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Addresses {
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
}

/// OUT/exposure.json: every row of the exposure table against what the
/// guest listens on and what each client host met, v4 and v6.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Matrix {
    pub format: u32,
    pub server: Addresses,
    pub clients: Vec<String>,
    pub listeners: Vec<MatrixRow>,
    /// Listening sockets on ports no listener declares.
    #[serde(default)]
    pub undeclared: Vec<Socket>,
    /// Every disagreement with the rule, in words (empty: the test passed).
    #[serde(default)]
    pub problems: Vec<String>,
}

pub const MATRIX_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MatrixRow {
    #[serde(flatten)]
    pub listener: Listener,
    pub listening: bool,
    pub listening_on: Vec<String>,
    /// Per client: a probe was answered by the service (open).
    pub reachable: BTreeMap<String, Families<bool>>,
    /// Per client: the packet got to the guest's stack (open or refused).
    pub passes_firewall: BTreeMap<String, Families<bool>>,
    /// Per client and family: port → what the probe met.
    pub probes: BTreeMap<String, Families<BTreeMap<String, Probe>>>,
    /// Public single UDP ports: packets the firewall's ACCEPT rule counted,
    /// all clients together (a silent service looks like a DROP otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall_accept_packets: Option<Families<u64>>,
}

/// A listening socket in the guest (`ss -tulpnH`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Socket {
    pub proto: String,
    pub address: String,
    pub port: u16,
    pub process: String,
}

impl Socket {
    pub fn loopback(&self) -> bool {
        self.address
            .trim_start_matches("::ffff:")
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    }
}

/// `ss -tulpnH` lines → sockets (other lines are skipped).
pub fn parse_ss(text: &str) -> Vec<Socket> {
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let proto = *cols.first()?;
            if proto != "tcp" && proto != "udp" {
                return None;
            }
            let (addr, port) = cols.get(4)?.rsplit_once(':')?;
            let address = addr
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split('%')
                .next()
                .unwrap_or_default()
                .to_string();
            let process = line
                .split_once("users:((\"")
                .and_then(|(_, rest)| rest.split('"').next())
                .unwrap_or("?")
                .to_string();
            Some(Socket {
                proto: proto.into(),
                address,
                port: port.parse().ok()?,
                process,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Value {
        serde_json::json!({"firewall": {
            "trusted_v4": ["192.168.77.20/32"], "trusted_v6": ["fd77::20/128"],
            "exposure_rules": [
                {"exposure": "public", "from": "anyone", "drop": false, "bind": "any", "listens": true},
                {"exposure": "trusted", "from": "trusted", "drop": false, "bind": "any", "listens": true},
                {"exposure": "localhost", "from": "nobody", "drop": false, "bind": "loopback", "listens": true},
                {"exposure": "blocked", "from": "nobody", "drop": true, "bind": "any", "listens": false}],
            "listeners": [
                {"service": "ssh", "proto": "tcp", "port": 22, "port_end": 0, "exposure": "trusted", "bind": []},
                {"service": "admin", "proto": "tcp", "port": 6443, "port_end": 0, "exposure": "trusted", "bind": ["192.168.77.10"]},
                {"service": "stun", "proto": "udp", "port": 3478, "port_end": 0, "exposure": "public", "bind": []},
                {"service": "relay", "proto": "udp", "port": 49152, "port_end": 65535, "exposure": "public", "bind": []},
                {"service": "pg", "proto": "tcp", "port": 5432, "port_end": 0, "exposure": "localhost", "bind": ["127.0.0.1", "::1"]},
                {"service": "epmd", "proto": "tcp", "port": 4369, "port_end": 0, "exposure": "blocked", "bind": []}]
        }})
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn who_may_connect_follows_the_rule() {
        let t = Table::from_config(&config()).unwrap();
        let [ssh, admin, stun, relay, pg, epmd] = &t.listeners[..] else {
            panic!()
        };
        let (trusted, untrusted) = (ip("192.168.77.20"), ip("fd77::30"));
        assert_eq!(t.acceptable(ssh, trusted), [Probe::Open]);
        assert_eq!(
            t.acceptable(ssh, untrusted),
            [Probe::Prohibited, Probe::Silent]
        );
        // Bound to an IPv4 address: over v6 the kernel refuses.
        assert_eq!(t.acceptable(admin, ip("fd77::20")), [Probe::Refused]);
        assert_eq!(t.acceptable(stun, untrusted), [Probe::Open]);
        assert_eq!(
            t.acceptable(relay, untrusted),
            [Probe::Open, Probe::Refused]
        );
        for l in [pg, epmd] {
            assert!(!t.passes(l, trusted), "{}", l.label());
        }
    }

    #[test]
    fn sockets_judged_by_the_rule() {
        let t = Table::from_config(&config()).unwrap();
        let pg = &t.listeners[4];
        assert_eq!(t.socket_problem(pg, "127.0.0.1"), None);
        assert!(
            t.socket_problem(pg, "0.0.0.0")
                .unwrap()
                .contains("not loopback")
        );
        let epmd = &t.listeners[5];
        assert!(
            t.socket_problem(epmd, "127.0.0.1")
                .unwrap()
                .contains("nothing may listen")
        );
        let admin = &t.listeners[1];
        assert_eq!(t.socket_problem(admin, "192.168.77.10"), None);
        assert!(
            t.socket_problem(admin, "0.0.0.0")
                .unwrap()
                .contains("allows 192.168.77.10")
        );
        assert_eq!(t.socket_problem(&t.listeners[0], "::"), None);
    }

    #[test]
    fn a_changed_rule_changes_every_verdict() {
        let mut c = config();
        c["firewall"]["exposure_rules"][1]["from"] = "anyone".into();
        let t = Table::from_config(&c).unwrap();
        assert_eq!(t.acceptable(&t.listeners[0], ip("fd77::30")), [Probe::Open]);
    }

    #[test]
    fn bad_tables_are_named() {
        let mut c = config();
        c["firewall"]["exposure_rules"] = serde_json::json!([]);
        let e = Table::from_config(&c).unwrap_err();
        assert!(e.contains("no firewall.exposure_rules"), "{e}");
        let mut c = config();
        c["firewall"]["exposure_rules"]
            .as_array_mut()
            .unwrap()
            .remove(3);
        let e = Table::from_config(&c).unwrap_err();
        assert!(
            e.contains("epmd 4369/tcp (blocked)") && e.contains("\"blocked\""),
            "{e}"
        );
        let mut c = config();
        c["firewall"]["trusted_v4"] = serde_json::json!(["nonsense"]);
        assert!(Table::from_config(&c).unwrap_err().contains("trusted_v4"));
    }

    #[test]
    fn ss_lines_become_sockets_and_probes_round_trip() {
        let s = parse_ss(
            "tcp   LISTEN 0      128          0.0.0.0:22        0.0.0.0:*    users:((\"sshd\",pid=1,fd=3))\nudp   UNCONN 0      0      [fe80::1%eth0]:546          [::]:*\n",
        );
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].address.as_str(), s[0].port, s[0].process.as_str()),
            ("0.0.0.0", 22, "sshd")
        );
        assert_eq!(
            (s[1].address.as_str(), s[1].process.as_str()),
            ("fe80::1", "?")
        );
        let words =
            serde_json::to_string(&[Probe::OpenOther, Probe::Error("error:EIO".into())]).unwrap();
        assert_eq!(words, r#"["open-other","error:EIO"]"#);
        let back: Vec<Probe> = serde_json::from_str(&words).unwrap();
        assert_eq!(back[1], Probe::Error("error:EIO".into()));
    }
}
