//! `probe_exposure`: every row of the build's exposure table probed from
//! every client host, v4 and v6, TCP and UDP, judged by the one rule
//! (src/exposure.rs); with the guest's listening sockets and the firewall's
//! UDP counters it makes the exposure matrix (OUT/exposure.json).
//!
//! The probes run in this process: each in a thread that entered the
//! client's network namespace (setns), so hundreds of them run at once and
//! mostly wait out the silence of dropped packets together.
pub use crate::exposure::parse_ss;
use crate::exposure::{
    Addresses, Families, MATRIX_FORMAT, Matrix, MatrixRow, Probe, Socket, Table,
};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const TCP_TIMEOUT: Duration = Duration::from_secs(3);
/// A port the firewall must stop only has to stay silent as long as a DROP
/// would: no need to wait out a whole STUN transaction.
const UDP_SILENT_BUDGET: Duration = Duration::from_millis(7500);
/// RFC 5389 7.2.1: RTO 500 ms, 7 requests, then 16 RTO: 39.5 s in all.
const STUN_RTO: Duration = Duration::from_millis(500);
const STUN_REQUESTS: u32 = 7;
const STUN_TOTAL: Duration = Duration::from_millis(39_500);

/// A client host as the probes need it.
#[derive(Clone)]
pub struct Prober {
    pub name: String,
    /// Network namespace ("" = this process's own, for tests).
    pub ns: String,
    pub ipv4: Option<IpAddr>,
    pub ipv6: Option<IpAddr>,
}

impl Prober {
    fn source(&self, v6: bool) -> Option<IpAddr> {
        if v6 { self.ipv6 } else { self.ipv4 }
    }
}

/// Run `f` in a new thread inside network namespace `ns`.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<Result<T, String>> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        if !ns.is_empty() {
            let path = format!("/run/netns/{ns}");
            let file =
                std::fs::File::open(&path).map_err(|e| format!("cannot open {path}: {e}"))?;
            // SAFETY: setns(2) on a valid descriptor changes only this thread's namespace.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!(
                    "cannot enter {path}: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        Ok(f())
    })
}

fn classify(e: &std::io::Error) -> Probe {
    match e.raw_os_error() {
        Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EACCES | libc::EPERM) => {
            Probe::Prohibited
        }
        Some(libc::ECONNREFUSED) => Probe::Refused,
        Some(libc::ETIMEDOUT | libc::EAGAIN) => Probe::Silent,
        _ if e.kind() == ErrorKind::TimedOut => Probe::Silent,
        _ => Probe::Error(format!("error: {e}")),
    }
}

pub fn tcp(addr: SocketAddr) -> Probe {
    match TcpStream::connect_timeout(&addr, TCP_TIMEOUT) {
        Ok(_) => Probe::Open,
        Err(e) => classify(&e),
    }
}

const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

fn transaction_id() -> [u8; 12] {
    let mut id = [0u8; 12];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut id))
        .is_err()
    {
        let t = Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id());
        id.copy_from_slice(&t.to_le_bytes()[..12]);
    }
    id
}

/// The XOR-MAPPED-ADDRESS of a STUN Binding success for transaction `id`.
pub fn mapped_address(msg: &[u8], id: &[u8; 12]) -> Option<SocketAddr> {
    if msg.len() < 20 || msg[0..2] != [0x01, 0x01] || msg[4..8] != MAGIC || &msg[8..20] != id {
        return None;
    }
    let mut at = 20;
    while at + 4 <= msg.len() {
        let kind = u16::from_be_bytes([msg[at], msg[at + 1]]);
        let len = usize::from(u16::from_be_bytes([msg[at + 2], msg[at + 3]]));
        let value = msg.get(at + 4..at + 4 + len)?;
        if kind == 0x0020 && len >= 8 {
            let port = u16::from_be_bytes([value[2], value[3]]) ^ 0x2112;
            let mut key = MAGIC.to_vec();
            key.extend_from_slice(id);
            let bytes: Vec<u8> = value[4..].iter().zip(&key).map(|(b, k)| b ^ k).collect();
            let ip = match (value[1], bytes.len()) {
                (1, 4) => IpAddr::from(<[u8; 4]>::try_from(&bytes[..]).ok()?),
                (2, 16) => IpAddr::from(<[u8; 16]>::try_from(&bytes[..]).ok()?),
                _ => return None,
            };
            return Some(SocketAddr::new(ip, port));
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// A STUN Binding request, retransmitted as RFC 5389 says, for at most
/// `budget`: open when the answer names this socket's own address.
pub fn stun(addr: SocketAddr, budget: Duration) -> Probe {
    let bind = if addr.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let sock = match UdpSocket::bind(bind).and_then(|s| s.connect(addr).map(|_| s)) {
        Ok(s) => s,
        Err(e) => return classify(&e),
    };
    let local = sock.local_addr().ok();
    let id = transaction_id();
    let mut req = vec![0x00, 0x01, 0x00, 0x00];
    req.extend_from_slice(&MAGIC);
    req.extend_from_slice(&id);
    let start = Instant::now();
    let end = budget.min(STUN_TOTAL);
    let (mut sent, mut next, mut rto) = (0, Duration::ZERO, STUN_RTO);
    let mut buf = [0u8; 1500];
    loop {
        let now = start.elapsed();
        if now >= end {
            return Probe::Silent;
        }
        if sent < STUN_REQUESTS && now >= next {
            if let Err(e) = sock.send(&req) {
                return classify(&e);
            }
            sent += 1;
            next += rto;
            rto *= 2;
        }
        let until = if sent < STUN_REQUESTS {
            next.min(end)
        } else {
            end
        };
        let wait = until
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(1));
        let _ = sock.set_read_timeout(Some(wait));
        match sock.recv(&mut buf) {
            Ok(n) => {
                return match mapped_address(&buf[..n], &id) {
                    Some(m) if Some(m) == local => Probe::Open,
                    _ => Probe::OpenOther,
                };
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return classify(&e),
        }
    }
}

/// The guest commands: its listening sockets, then (after the probes) the firewall's counters.
pub const GUEST_SOCKETS: &str = "ss -tulpnH";
pub const GUEST_COUNTERS: &str =
    "iptables-save -c -t filter; echo '#hardroot-v6'; ip6tables-save -c -t filter";

pub fn split_counters(text: &str) -> Families<String> {
    let (v4, v6) = text.split_once("#hardroot-v6").unwrap_or((text, ""));
    Families {
        ipv4: v4.into(),
        ipv6: v6.into(),
    }
}

/// Packets the INPUT ACCEPT rules for a UDP port counted ("[packets:bytes] -A INPUT ...").
pub fn accepted_packets(rules: &str, port: u16) -> u64 {
    let dport = format!("--dport {port}");
    rules
        .lines()
        .filter(|l| l.contains("-A INPUT ") && l.contains(" -p udp ") && l.contains("-j ACCEPT"))
        .filter(|l| l.split_whitespace().any(|w| w == port.to_string()) && l.contains(&dport))
        .filter_map(|l| {
            let counts = l.strip_prefix('[')?.split(']').next()?;
            counts.split(':').next()?.parse::<u64>().ok()
        })
        .sum()
}

struct Job {
    client: usize,
    row: usize,
    v6: bool,
    port: u16,
}

/// Probe every row from every client, then judge. `counters` is asked after
/// the probes (it reads the firewall's counters).
pub fn probe_exposure(
    table: &Table,
    server: &Addresses,
    clients: &[Prober],
    sockets: Vec<Socket>,
    counters: impl FnOnce() -> Result<Families<String>, String>,
) -> Result<Matrix, String> {
    let server_ip = |v6: bool| -> Option<IpAddr> {
        let a = if v6 { &server.ipv6 } else { &server.ipv4 };
        a.as_ref()?.parse().ok()
    };
    let mut jobs = Vec::new();
    let mut handles = Vec::new();
    for (ci, c) in clients.iter().enumerate() {
        for (ri, l) in table.listeners.iter().enumerate() {
            for v6 in [false, true] {
                let (Some(dst), Some(src)) = (server_ip(v6), c.source(v6)) else {
                    continue;
                };
                let passes = table.passes(l, src);
                for port in l.probe_ports() {
                    let addr = SocketAddr::new(dst, port);
                    let udp = l.proto == "udp";
                    let budget = if passes {
                        STUN_TOTAL
                    } else {
                        UDP_SILENT_BUDGET
                    };
                    handles.push(in_netns(&c.ns, move || {
                        if udp { stun(addr, budget) } else { tcp(addr) }
                    }));
                    jobs.push(Job {
                        client: ci,
                        row: ri,
                        v6,
                        port,
                    });
                }
            }
        }
    }
    let outcomes: Vec<Probe> = handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| Err("a probe thread panicked".into()))
                .unwrap_or_else(Probe::Error)
        })
        .collect();
    let counters = counters()?;
    let mut problems = Vec::new();
    let mut rows: Vec<MatrixRow> = table
        .listeners
        .iter()
        .map(|l| {
            let mine: Vec<&Socket> = sockets
                .iter()
                .filter(|s| l.covers(&s.proto, s.port))
                .collect();
            for s in &mine {
                if let Some(p) = table.socket_problem(l, &s.address) {
                    problems.push(format!(
                        "{}: {} {}:{} ({}): {p}",
                        l.label(),
                        s.proto,
                        s.address,
                        s.port,
                        s.process
                    ));
                }
            }
            let listens = table.rule(l).is_ok_and(|r| r.listens);
            if mine.is_empty() && listens && !l.is_range() {
                problems.push(format!("{}: declared, but nothing listens", l.label()));
            }
            let mut on: Vec<String> = mine.iter().map(|s| s.address.clone()).collect();
            on.sort();
            on.dedup();
            MatrixRow {
                listener: l.clone(),
                listening: !mine.is_empty(),
                listening_on: on,
                reachable: BTreeMap::new(),
                passes_firewall: BTreeMap::new(),
                probes: BTreeMap::new(),
                firewall_accept_packets: None,
            }
        })
        .collect();
    for (job, got) in jobs.iter().zip(&outcomes) {
        let c = &clients[job.client];
        let l = &table.listeners[job.row];
        let row = &mut rows[job.row];
        let probes = row.probes.entry(c.name.clone()).or_default();
        pick(probes, job.v6).insert(job.port.to_string(), got.clone());
        *pick(row.reachable.entry(c.name.clone()).or_default(), job.v6) |= *got == Probe::Open;
        *pick(
            row.passes_firewall.entry(c.name.clone()).or_default(),
            job.v6,
        ) |= got.passed_firewall();
        let Some(src) = c.source(job.v6) else {
            continue;
        };
        let ok = table.acceptable(l, src);
        if !ok.contains(got) {
            let words: Vec<&str> = ok.iter().map(Probe::word).collect();
            problems.push(format!(
                "{} port {} from {} over {}: {}, expected {}",
                l.label(),
                job.port,
                c.name,
                if job.v6 { "ipv6" } else { "ipv4" },
                got.word(),
                words.join(" or ")
            ));
        }
    }
    // A UDP service could stay silent and look like a DROP: the firewall's
    // own ACCEPT counters say that each client's datagrams got in.
    for (row, l) in rows.iter_mut().zip(&table.listeners) {
        if l.proto != "udp" || l.is_range() {
            continue;
        }
        let want = |v6: bool| -> u64 {
            clients
                .iter()
                .filter(|c| {
                    c.source(v6).is_some_and(|s| table.passes(l, s)) && server_ip(v6).is_some()
                })
                .count() as u64
        };
        let got = Families {
            ipv4: accepted_packets(&counters.ipv4, l.port),
            ipv6: accepted_packets(&counters.ipv6, l.port),
        };
        for (v6, n) in [(false, got.ipv4), (true, got.ipv6)] {
            if n < want(v6) {
                problems.push(format!(
                    "{}: the {} ACCEPT rules counted {n} packet(s), expected at least {} (one per client that may reach it)",
                    l.label(),
                    if v6 { "ip6tables" } else { "iptables" },
                    want(v6)
                ));
            }
        }
        if want(false) + want(true) > 0 {
            row.firewall_accept_packets = Some(got);
        }
    }
    let mut undeclared: Vec<Socket> = sockets
        .iter()
        .filter(|s| table.find(&s.proto, s.port).is_none())
        .cloned()
        .collect();
    undeclared.dedup();
    for s in &undeclared {
        problems.push(format!(
            "{} {}:{} ({}): not in the exposure table",
            s.proto, s.address, s.port, s.process
        ));
    }
    Ok(Matrix {
        format: MATRIX_FORMAT,
        server: server.clone(),
        clients: clients.iter().map(|c| c.name.clone()).collect(),
        listeners: rows,
        undeclared,
        problems,
    })
}

fn pick<T>(f: &mut Families<T>, v6: bool) -> &mut T {
    if v6 { &mut f.ipv6 } else { &mut f.ipv4 }
}

/// One line per probe, for the log.
pub fn summary(m: &Matrix) -> String {
    let mut out = Vec::new();
    for r in &m.listeners {
        let mut line = format!(
            "{:<40} listening: {}",
            r.listener.label(),
            if r.listening {
                r.listening_on.join(",")
            } else {
                "no".into()
            }
        );
        for (client, fams) in &r.probes {
            for (fam, ports) in [("v4", &fams.ipv4), ("v6", &fams.ipv6)] {
                let words: Vec<String> = ports.values().map(|p| p.word().to_string()).collect();
                if !words.is_empty() {
                    line.push_str(&format!(" · {client} {fam} {}", words.join("/")));
                }
            }
        }
        if let Some(n) = &r.firewall_accept_packets {
            line.push_str(&format!(" · ACCEPT counted v4 {} v6 {}", n.ipv4, n.ipv6));
        }
        out.push(line);
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_states_on_loopback() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        assert_eq!(tcp(open), Probe::Open);
        drop(listener);
        assert_eq!(tcp(open), Probe::Refused);
    }

    /// A STUN server of three lines: the answer names the sender's address.
    fn stun_server(reply_mapped: bool) -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            let (_, from) = s.recv_from(&mut buf).unwrap();
            let mut msg = vec![0x01, 0x01, 0x00, 12];
            msg.extend_from_slice(&buf[4..20]);
            let port = from.port() ^ 0x2112;
            let SocketAddr::V4(v4) = from else { panic!() };
            let ip: Vec<u8> = v4
                .ip()
                .octets()
                .iter()
                .zip(MAGIC)
                .map(|(b, k)| b ^ k)
                .collect();
            msg.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]);
            msg.extend_from_slice(&port.to_be_bytes());
            msg.extend_from_slice(&ip);
            if !reply_mapped {
                msg[25] = 0x09;
            }
            s.send_to(&msg, from).unwrap();
        });
        addr
    }

    #[test]
    fn stun_answers_and_silence() {
        assert_eq!(stun(stun_server(true), STUN_TOTAL), Probe::Open);
        assert_eq!(stun(stun_server(false), STUN_TOTAL), Probe::OpenOther);
        // Nothing bound: the kernel's port unreachable.
        let gone = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert_eq!(stun(gone, Duration::from_secs(3)), Probe::Refused);
        // Bound but never answering: silent within the budget.
        let mute = UdpSocket::bind("127.0.0.1:0").unwrap();
        let t = Instant::now();
        assert_eq!(
            stun(mute.local_addr().unwrap(), Duration::from_millis(1200)),
            Probe::Silent
        );
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn counters_are_summed_per_port() {
        let rules = "[3:120] -A INPUT -p udp -m udp --dport 3478 -m comment --comment \"stun public\" -j ACCEPT\n[9:1] -A INPUT -p udp -m udp --dport 34780 -j ACCEPT\n[2:80] -A INPUT -s 10.0.0.0/8 -p udp -m udp --dport 3478 -j ACCEPT\n[5:5] -A INPUT -p udp -m udp --dport 3478 -j DROP\n";
        assert_eq!(accepted_packets(rules, 3478), 5);
        let f = split_counters("a\n#hardroot-v6\nb\n");
        assert_eq!((f.ipv4.trim(), f.ipv6.trim()), ("a", "b"));
    }

    /// The whole verb against this host's loopback: the rule's verdicts,
    /// the matrix and its problems.
    #[test]
    fn the_matrix_judges_every_probe_by_the_rule() {
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = open.local_addr().unwrap().port();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let config = serde_json::json!({"firewall": {
            "trusted_v4": ["127.0.0.0/8"],
            "exposure_rules": [
                {"exposure": "public", "from": "anyone", "drop": false, "bind": "any", "listens": true},
                {"exposure": "trusted", "from": "trusted", "drop": false, "bind": "any", "listens": true},
                {"exposure": "blocked", "from": "nobody", "drop": true, "bind": "any", "listens": false}],
            "listeners": [
                {"service": "web", "proto": "tcp", "port": port, "exposure": "trusted"},
                {"service": "old", "proto": "tcp", "port": closed, "exposure": "public"}]
        }});
        let table = Table::from_config(&config).unwrap();
        let server = Addresses {
            ipv4: Some("127.0.0.1".into()),
            ipv6: None,
        };
        let clients = [Prober {
            name: "here".into(),
            ns: String::new(),
            ipv4: Some("127.0.0.1".parse().unwrap()),
            ipv6: None,
        }];
        let sockets = vec![
            Socket {
                proto: "tcp".into(),
                address: "0.0.0.0".into(),
                port,
                process: "web".into(),
            },
            Socket {
                proto: "tcp".into(),
                address: "0.0.0.0".into(),
                port: 1,
                process: "stray".into(),
            },
        ];
        let m = probe_exposure(&table, &server, &clients, sockets, || {
            Ok(Families::default())
        })
        .unwrap();
        assert_eq!(
            m.listeners[0].probes["here"].ipv4[&port.to_string()],
            Probe::Open
        );
        assert!(m.listeners[0].reachable["here"].ipv4);
        assert_eq!(m.problems.len(), 3, "{:#?}", m.problems);
        assert!(
            m.problems[0].contains("declared, but nothing listens"),
            "{:?}",
            m.problems
        );
        assert!(
            m.problems[1].contains("refused, expected open"),
            "{:?}",
            m.problems
        );
        assert!(
            m.problems[2].contains("not in the exposure table"),
            "{:?}",
            m.problems
        );
        // The report reads what the driver wrote.
        let text = serde_json::to_string(&m).unwrap();
        let back: Matrix = serde_json::from_str(&text).unwrap();
        assert_eq!(back.listeners[1].probes["here"].ipv4.len(), 1);
        assert!(summary(&m).contains("web"));
    }
}
