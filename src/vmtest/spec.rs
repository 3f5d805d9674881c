//! `vm-tests/<name>/test.toml`: the machines and client hosts of one test.
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::path::{Path, PathBuf};
use toml_edit::{DocumentMut, Item, Table};

#[derive(Debug, Clone, PartialEq)]
pub struct TestSpec {
    pub name: String,
    pub dir: PathBuf,
    pub description: String,
    /// Limit for the whole script, in seconds.
    pub timeout_secs: u64,
    pub machines: Vec<MachineSpec>,
    /// A private network (namespace + bridge) exists when test.toml has `[network]`.
    pub network: bool,
    pub clients: Vec<ClientSpec>,
}

/// Where a machine's disk comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Whatever the command line says (PROFILE or --image).
    Default,
    Profile(PathBuf),
    /// A folder with rootfs.img, vmlinuz and initrd.img.
    Image(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct MachineSpec {
    pub name: String,
    pub source: Source,
    pub memory_mib: u64,
    pub cpus: u64,
    pub boot_timeout_secs: u64,
    /// The addresses the machine's profile configures (for scripts: `server.ipv4`).
    pub ipv4: Option<Ipv4Net>,
    pub ipv6: Option<Ipv6Net>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClientSpec {
    pub name: String,
    pub ipv4: Option<Ipv4Net>,
    pub ipv6: Option<Ipv6Net>,
}

pub fn load(test_dir: &Path) -> Result<TestSpec, String> {
    let file = test_dir.join("test.toml");
    let text = std::fs::read_to_string(&file).map_err(|e| {
        format!(
            "cannot read {}: {e} (every VM test folder needs a test.toml)",
            file.display()
        )
    })?;
    parse(&text, test_dir).map_err(|e| format!("{}: {e}", file.display()))
}

pub fn parse(text: &str, test_dir: &Path) -> Result<TestSpec, String> {
    let doc: DocumentMut = text.parse().map_err(|e| format!("not valid TOML: {e}"))?;
    let root = doc.as_table();
    known_keys(root, "", &["test", "machines", "network", "clients"])?;
    let test = optional_table(root, "test")?;
    let (description, timeout_secs) = match test {
        Some(t) => {
            known_keys(t, "test.", &["description", "timeout"])?;
            (
                string(t, "test.", "description")?.unwrap_or_default(),
                uint(t, "test.", "timeout")?.unwrap_or(1800),
            )
        }
        None => (String::new(), 1800),
    };
    let machines = machines(root, test_dir)?;
    let network = optional_table(root, "network")?.is_some();
    let clients = clients(root)?;
    if !clients.is_empty() && !network {
        return Err("[clients.*] need a test network: add an empty [network] table".into());
    }
    let name = test_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "test".into());
    Ok(TestSpec {
        name,
        dir: test_dir.to_path_buf(),
        description,
        timeout_secs,
        machines,
        network,
        clients,
    })
}

fn machines(root: &Table, test_dir: &Path) -> Result<Vec<MachineSpec>, String> {
    let Some(table) = optional_table(root, "machines")? else {
        return Err("no machines: add at least one [machines.<name>] table".into());
    };
    let mut out = Vec::new();
    for (name, item) in table.iter() {
        check_name(name, "machine")?;
        let ctx = format!("machines.{name}.");
        let t = item_table(item, &ctx)?;
        known_keys(
            t,
            &ctx,
            &[
                "profile",
                "image",
                "memory",
                "cpus",
                "boot_timeout",
                "ipv4",
                "ipv6",
            ],
        )?;
        let source = match (string(t, &ctx, "profile")?, string(t, &ctx, "image")?) {
            (Some(_), Some(_)) => {
                return Err(format!("{ctx}: give either profile or image, not both"));
            }
            (Some(p), None) => Source::Profile(test_dir.join(p)),
            (None, Some(i)) => Source::Image(test_dir.join(i)),
            (None, None) => Source::Default,
        };
        let (ipv4, ipv6) = addresses(t, &ctx)?;
        out.push(MachineSpec {
            name: name.to_string(),
            source,
            memory_mib: uint(t, &ctx, "memory")?.unwrap_or(1024),
            cpus: uint(t, &ctx, "cpus")?.unwrap_or(2).clamp(1, 64),
            boot_timeout_secs: uint(t, &ctx, "boot_timeout")?.unwrap_or(300),
            ipv4,
            ipv6,
        });
    }
    if out.is_empty() {
        return Err("no machines: add at least one [machines.<name>] table".into());
    }
    Ok(out)
}

fn clients(root: &Table) -> Result<Vec<ClientSpec>, String> {
    let Some(table) = optional_table(root, "clients")? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (name, item) in table.iter() {
        check_name(name, "client")?;
        let ctx = format!("clients.{name}.");
        let t = item_table(item, &ctx)?;
        known_keys(t, &ctx, &["ipv4", "ipv6"])?;
        let (ipv4, ipv6) = addresses(t, &ctx)?;
        if ipv4.is_none() && ipv6.is_none() {
            return Err(format!(
                "{ctx}: a client needs ipv4 and/or ipv6, e.g. ipv4 = \"192.168.77.20/24\""
            ));
        }
        out.push(ClientSpec {
            name: name.to_string(),
            ipv4,
            ipv6,
        });
    }
    Ok(out)
}

fn addresses(t: &Table, ctx: &str) -> Result<(Option<Ipv4Net>, Option<Ipv6Net>), String> {
    let v4 = match string(t, ctx, "ipv4")? {
        Some(s) => match cidr(&s, ctx, "ipv4")? {
            IpNet::V4(n) => Some(n),
            IpNet::V6(_) => return Err(format!("{ctx}ipv4 = {s:?} is an IPv6 address")),
        },
        None => None,
    };
    let v6 = match string(t, ctx, "ipv6")? {
        Some(s) => match cidr(&s, ctx, "ipv6")? {
            IpNet::V6(n) => Some(n),
            IpNet::V4(_) => return Err(format!("{ctx}ipv6 = {s:?} is an IPv4 address")),
        },
        None => None,
    };
    Ok((v4, v6))
}

fn cidr(s: &str, ctx: &str, key: &str) -> Result<IpNet, String> {
    s.parse().map_err(|_| {
        format!(
            "{ctx}{key} = {s:?} is not an address with a prefix length, e.g. \"192.168.77.20/24\""
        )
    })
}

/// Names become script variables (`server.succeed(...)`) and interface suffixes.
fn check_name(name: &str, what: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 32;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name {name:?} must match [a-z][a-z0-9_]* (it becomes a script variable)"
        ))
    }
}

fn known_keys(t: &Table, ctx: &str, keys: &[&str]) -> Result<(), String> {
    for (k, _) in t.iter() {
        if !keys.contains(&k) {
            return Err(format!(
                "unknown key {ctx}{k}; known keys here: {}",
                keys.join(", ")
            ));
        }
    }
    Ok(())
}

fn optional_table<'a>(t: &'a Table, key: &str) -> Result<Option<&'a Table>, String> {
    match t.get(key) {
        None => Ok(None),
        Some(item) => item_table(item, &format!("{key}.")).map(Some),
    }
}

fn item_table<'a>(item: &'a Item, ctx: &str) -> Result<&'a Table, String> {
    item.as_table()
        .ok_or_else(|| format!("{} must be a table", ctx.trim_end_matches('.')))
}

fn string(t: &Table, ctx: &str, key: &str) -> Result<Option<String>, String> {
    match t.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| format!("{ctx}{key} must be a string")),
    }
}

fn uint(t: &Table, ctx: &str, key: &str) -> Result<Option<u64>, String> {
    match t.get(key) {
        None => Ok(None),
        Some(v) => match v.as_integer() {
            Some(n) if n > 0 => Ok(Some(n as u64)),
            _ => Err(format!("{ctx}{key} must be a positive integer")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
[test]
description = "firewall"
timeout = 600

[machines.server]
profile = "profile.toml"
memory = 2048
ipv4 = "192.168.77.10/24"
ipv6 = "fd77::10/64"

[machines.other]
image = "/var/tmp/img"

[network]

[clients.trusted]
ipv4 = "192.168.77.20/24"
ipv6 = "fd77::20/64"
"#;

    #[test]
    fn full_spec() {
        let s = parse(FULL, Path::new("vm-tests/fw")).unwrap();
        assert_eq!(s.name, "fw");
        assert_eq!(s.timeout_secs, 600);
        assert!(s.network);
        assert_eq!(s.machines[0].name, "server");
        assert_eq!(
            s.machines[0].source,
            Source::Profile(PathBuf::from("vm-tests/fw/profile.toml"))
        );
        assert_eq!(s.machines[0].memory_mib, 2048);
        assert_eq!(
            s.machines[0].ipv4.unwrap().addr().to_string(),
            "192.168.77.10"
        );
        assert_eq!(
            s.machines[1].source,
            Source::Image(PathBuf::from("/var/tmp/img"))
        );
        assert_eq!(s.machines[1].cpus, 2);
        assert_eq!(s.clients[0].ipv6.unwrap().to_string(), "fd77::20/64");
    }

    #[test]
    fn mistakes_are_named() {
        let err = |t: &str| parse(t, Path::new("x")).unwrap_err();
        assert!(err("").contains("no machines"));
        assert!(
            err("[machines.server]\nmemroy = 1").contains("unknown key machines.server.memroy")
        );
        assert!(err("[machines.Server]").contains("must match"));
        assert!(err("[machines.s]\nipv4 = \"fd77::1/64\"").contains("is an IPv6 address"));
        assert!(err("[machines.s]\nipv4 = \"1.2.3.4\"").contains("prefix length"));
        assert!(err("[machines.s]\n[clients.c]\nipv4 = \"10.0.0.1/24\"").contains("[network]"));
        assert!(err("[machines.s]\nprofile = \"a\"\nimage = \"b\"").contains("not both"));
        assert!(err("[machines.s]\nmemory = -1").contains("positive integer"));
    }
}
