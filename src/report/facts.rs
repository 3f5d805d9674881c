//! Parsers for the text the acceptance test collects in facts/ (plain tool
//! output, so the test needs no JSON writer). Each parser skips lines it does
//! not understand: the page shows what it could read, never panics.
use std::collections::BTreeMap;

/// One listening socket from `ss -H -tuln` (optionally with -p).
#[derive(Debug, Clone, PartialEq)]
pub struct Socket {
    pub proto: String,
    pub addr: String,
    pub port: u32,
    pub process: String,
}

impl Socket {
    pub fn loopback(&self) -> bool {
        let a = self.addr.trim_start_matches("::ffff:");
        a.starts_with("127.") || a == "::1" || a == "localhost"
    }
}

/// `tcp LISTEN 0 511 0.0.0.0:80 0.0.0.0:* users:(("nginx",pid=1,fd=6))`
pub fn sockets(ss: &str) -> Vec<Socket> {
    ss.lines().filter_map(socket).collect()
}

fn socket(line: &str) -> Option<Socket> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    let proto = *cols.first()?;
    if !matches!(proto, "tcp" | "udp") {
        return None;
    }
    let local = cols.get(4)?;
    let (addr, port) = local.rsplit_once(':')?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    // ss prints an interface scope as addr%iface.
    let addr = addr.split('%').next().unwrap_or(addr);
    Some(Socket {
        proto: proto.into(),
        addr: addr.into(),
        port: port.parse().ok()?,
        process: cols.get(6).map(|p| process_name(p)).unwrap_or_default(),
    })
}

/// `users:(("nginx",pid=1,fd=6),...)` → `nginx`
fn process_name(users: &str) -> String {
    users
        .split('"')
        .nth(1)
        .map(str::to_string)
        .unwrap_or_default()
}

/// `sysctl -a` / `sysctl KEY...`: `key = value`.
pub fn sysctl(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// `sshd -T`: `key value...`, keys lower-case; repeated keys are joined.
pub fn sshd(text: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once(' ') else {
            continue;
        };
        out.entry(k.to_lowercase())
            .and_modify(|old| {
                old.push(' ');
                old.push_str(v.trim());
            })
            .or_insert_with(|| v.trim().to_string());
    }
    out
}

/// A chain of iptables-save output.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Chain {
    /// ACCEPT/DROP for built-in chains, "-" for user chains.
    pub policy: String,
    pub rules: usize,
}

/// `iptables-save` / rules.v4: (table, chain) → policy and rule count.
pub fn iptables(text: &str) -> BTreeMap<(String, String), Chain> {
    let mut out: BTreeMap<(String, String), Chain> = BTreeMap::new();
    let mut table = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
        } else if let Some(decl) = line.strip_prefix(':') {
            let mut parts = decl.split_whitespace();
            let (Some(name), Some(policy)) = (parts.next(), parts.next()) else {
                continue;
            };
            let chain = out.entry((table.clone(), name.into())).or_default();
            chain.policy = policy.into();
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let Some(name) = rule.split_whitespace().next() else {
                continue;
            };
            out.entry((table.clone(), name.into())).or_default().rules += 1;
        }
    }
    out
}

/// One TLS handshake attempt from facts/tls.txt:
/// `PORT MODE VERSION accepted|refused [CIPHER]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Handshake {
    pub port: u32,
    pub mode: String,
    pub version: String,
    pub accepted: bool,
    pub cipher: Option<String>,
}

pub fn tls(text: &str) -> Vec<Handshake> {
    text.lines().filter_map(handshake).collect()
}

fn handshake(line: &str) -> Option<Handshake> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    if cols.len() < 4 || cols[0].starts_with('#') {
        return None;
    }
    let accepted = match cols[3] {
        "accepted" => true,
        "refused" => false,
        _ => return None,
    };
    Some(Handshake {
        port: cols[0].parse().ok()?,
        mode: cols[1].into(),
        version: cols[2].into(),
        accepted,
        cipher: cols
            .get(4)
            .filter(|c| **c != "-" && **c != "(NONE)")
            .map(|c| c.to_string()),
    })
}

/// The acceptance test's tls-probe.py output (OUT/tls-PORT.txt):
/// `HOST:PORT[ STARTTLS] TLSv1.2: accepted, CIPHER` / `...: refused` and
/// `HOST:PORT[ STARTTLS] TLS 1.2 ciphers accepted: A B` (1.3: `suites`).
pub fn tls_findings(text: &str) -> Vec<Handshake> {
    text.lines().flat_map(finding).collect()
}

fn finding(line: &str) -> Vec<Handshake> {
    let Some((head, rest)) = line.split_once(": ") else {
        return Vec::new();
    };
    let mut words = head.split_whitespace();
    let Some(port) = words
        .next()
        .and_then(|hp| hp.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
    else {
        return Vec::new();
    };
    let mut what: Vec<&str> = words.collect();
    let mode = if what.first() == Some(&"STARTTLS") {
        what.remove(0);
        "starttls"
    } else {
        "tls"
    };
    let make = |version: &str, accepted: bool, cipher: Option<&str>| Handshake {
        port,
        mode: mode.into(),
        version: version.into(),
        accepted,
        cipher: cipher.map(str::to_string),
    };
    match what.as_slice() {
        [v] if v.starts_with("TLSv") => {
            let lower = rest.to_lowercase();
            let accepted = lower.starts_with("accepted");
            let cipher = rest.split_once(", ").map(|(_, c)| c.trim());
            vec![make(v, accepted, cipher)]
        }
        ["TLS", n, "ciphers" | "suites", "accepted"] => rest
            .split_whitespace()
            .filter(|c| *c != "none")
            .map(|c| make(&format!("TLSv{n}"), true, Some(c)))
            .collect(),
        _ => Vec::new(),
    }
}

/// `systemd-analyze blame`: `12.345s unit.service` (or `1min 2.3s unit`).
pub fn blame(text: &str, top: usize) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let split = l.rfind(' ')?;
            Some((l[..split].trim().to_string(), l[split + 1..].to_string()))
        })
        .take(top)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ss_lines() {
        let text = "tcp   LISTEN 0      511          0.0.0.0:80        0.0.0.0:*    users:((\"httpd\",pid=612,fd=6))\n\
                    tcp   LISTEN 0      244        [::1]:5432           [::]:*\n\
                    udp   UNCONN 0      0     127.0.0.1%lo:53        0.0.0.0:*\n\
                    garbage\n";
        let s = sockets(text);
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[0].addr.as_str(), s[0].port, s[0].process.as_str()),
            ("0.0.0.0", 80, "httpd")
        );
        assert_eq!((s[1].addr.as_str(), s[1].port), ("::1", 5432));
        assert!(s[1].loopback() && s[2].loopback() && !s[0].loopback());
        assert_eq!(s[2].proto, "udp");
    }

    #[test]
    fn iptables_counts() {
        let text = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:HR-IN - [0:0]\n\
                    -A INPUT -i lo -j ACCEPT\n-A INPUT -j HR-IN\n-A HR-IN -p tcp --dport 22 -j ACCEPT\nCOMMIT\n";
        let c = iptables(text);
        let input = &c[&("filter".into(), "INPUT".into())];
        assert_eq!((input.policy.as_str(), input.rules), ("DROP", 2));
        assert_eq!(c[&("filter".into(), "HR-IN".into())].rules, 1);
        assert_eq!(c[&("filter".into(), "OUTPUT".into())].rules, 0);
    }

    #[test]
    fn tls_lines() {
        let h = tls(
            "# port mode version result cipher\n443 tls TLSv1.2 accepted ECDHE-ECDSA-AES256-GCM-SHA384\n5222 starttls TLSv1.1 refused -\nbad line\n",
        );
        assert_eq!(h.len(), 2);
        assert!(h[0].accepted && h[0].cipher.as_deref() == Some("ECDHE-ECDSA-AES256-GCM-SHA384"));
        assert!(!h[1].accepted && h[1].cipher.is_none());
    }

    #[test]
    fn tls_probe_py_lines() {
        let h = tls_findings(
            "192.168.77.10:5222 STARTTLS TLSv1: refused\n\
             192.168.77.10:5222 STARTTLS TLSv1.2: accepted, ECDHE-ECDSA-AES256-GCM-SHA384\n\
             192.168.77.10:443 TLS 1.2 ciphers accepted: A B\n\
             192.168.77.10:443 TLS 1.3 suites accepted: none\n\
             192.168.77.10:443 certificate for x verifies against y: yes\n\
             [fd77::10]:5223 TLSv1.1: refused\n",
        );
        assert_eq!(h.len(), 5);
        assert_eq!(
            (h[0].port, h[0].mode.as_str(), h[0].accepted),
            (5222, "starttls", false)
        );
        assert_eq!(
            h[1].cipher.as_deref(),
            Some("ECDHE-ECDSA-AES256-GCM-SHA384")
        );
        assert_eq!(
            (h[3].version.as_str(), h[3].cipher.as_deref()),
            ("TLSv1.2", Some("B"))
        );
        // An IPv6 endpoint, bracketed (--versions-only probes).
        assert_eq!(
            (h[4].port, h[4].version.as_str(), h[4].accepted),
            (5223, "TLSv1.1", false)
        );
    }

    #[test]
    fn sshd_and_sysctl_and_blame() {
        let s = sshd(
            "port 22\nPasswordAuthentication no\nlistenaddress 0.0.0.0:22\nlistenaddress [::]:22\n",
        );
        assert_eq!(s["passwordauthentication"], "no");
        assert_eq!(s["listenaddress"], "0.0.0.0:22 [::]:22");
        let k = sysctl("net.ipv4.tcp_syncookies = 1\nkernel.x = a b\n");
        assert_eq!(k["kernel.x"], "a b");
        let b = blame("31.002s crowdsec.service\n1min 2.5s chat.service\n", 10);
        assert_eq!(b[1], ("1min 2.5s".to_string(), "chat.service".to_string()));
    }
}
