//! The test network: a private network namespace with a bridge, a tap per VM,
//! and one more namespace per client host joined by a veth pair. Nothing in it
//! has a route to the outside: the host's own namespace is never connected.
use super::host::admin;
use super::spec::ClientSpec;

/// Namespaces are named `hr-<pid>-<n>`: the pid lets a later run delete what a
/// killed run (SIGKILL skips Drop) left behind.
const PREFIX: &str = "hr-";

pub struct Network {
    pub ns: String,
    clients: Vec<String>,
    taps: usize,
}

impl Network {
    pub fn create(clients: &[ClientSpec]) -> Result<Network, String> {
        sweep_stale();
        let ns = format!("{PREFIX}{}-{}", std::process::id(), unique());
        admin(&["ip", "netns", "add", &ns])?;
        // From here on Drop deletes whatever was made, also when a step fails.
        let mut net = Network {
            ns,
            clients: Vec::new(),
            taps: 0,
        };
        net.in_ns(&["link", "set", "lo", "up"])?;
        // No multicast snooping: IPv6 neighbour discovery must always flood.
        net.in_ns(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        net.in_ns(&["link", "set", "br0", "up"])?;
        for (i, c) in clients.iter().enumerate() {
            net.add_client(i, c)?;
        }
        Ok(net)
    }

    /// A new tap on the bridge for one VM; QEMU opens it by name inside the namespace.
    pub fn add_tap(&mut self) -> Result<String, String> {
        let tap = format!("tap{}", self.taps);
        self.taps += 1;
        self.in_ns(&["tuntap", "add", "dev", &tap, "mode", "tap"])?;
        self.in_ns(&["link", "set", &tap, "master", "br0", "up"])?;
        Ok(tap)
    }

    pub fn client_ns(&self, name: &str) -> String {
        format!("{}-{name}", self.ns)
    }

    fn add_client(&mut self, index: usize, c: &ClientSpec) -> Result<(), String> {
        let cns = self.client_ns(&c.name);
        admin(&["ip", "netns", "add", &cns])?;
        self.clients.push(cns.clone());
        let port = format!("vc{index}");
        self.in_ns(&[
            "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &cns,
        ])?;
        self.in_ns(&["link", "set", &port, "master", "br0", "up"])?;
        admin(&["ip", "-n", &cns, "link", "set", "lo", "up"])?;
        if let Some(v4) = c.ipv4 {
            admin(&[
                "ip",
                "-n",
                &cns,
                "addr",
                "add",
                &v4.to_string(),
                "dev",
                "eth0",
            ])?;
        }
        if let Some(v6) = c.ipv6 {
            // nodad: the address is usable at once instead of after ~2 s of duplicate detection.
            admin(&[
                "ip",
                "-n",
                &cns,
                "addr",
                "add",
                &v6.to_string(),
                "dev",
                "eth0",
                "nodad",
            ])?;
        }
        admin(&["ip", "-n", &cns, "link", "set", "eth0", "up"])?;
        Ok(())
    }

    fn in_ns(&self, args: &[&str]) -> Result<String, String> {
        let mut argv = vec!["ip", "-n", self.ns.as_str()];
        argv.extend_from_slice(args);
        admin(&argv)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in self.clients.iter().chain(std::iter::once(&self.ns)) {
            // A deleted namespace lives on while a process is in it: stop stragglers
            // (servers a script started in the background on a client host) first.
            kill_members(ns);
            if let Err(e) = admin(&["ip", "netns", "del", ns]) {
                eprintln!("warning: could not delete network namespace {ns}: {e}");
            }
        }
    }
}

fn kill_members(ns: &str) {
    let Ok(pids) = admin(&["ip", "netns", "pids", ns]) else {
        return;
    };
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        // SAFETY: kill(2) on a pid that `ip netns pids` reported inside our namespace.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}", nanos)
}

/// Delete `hr-<pid>-*` namespaces whose pid no longer runs (left by a killed run).
fn sweep_stale() {
    let Ok(list) = admin(&["ip", "netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if let Some(pid) = owner_pid(name)
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = admin(&["ip", "netns", "del", name]);
        }
    }
}

fn owner_pid(ns: &str) -> Option<u32> {
    ns.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn owner_pid_of_our_names_only() {
        assert_eq!(super::owner_pid("hr-1234-ab12"), Some(1234));
        assert_eq!(super::owner_pid("hr-1234-ab12-trusted"), Some(1234));
        assert_eq!(super::owner_pid("other-1234"), None);
        assert_eq!(super::owner_pid("hr-x-1"), None);
    }
}
