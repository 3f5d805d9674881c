//! `vm-tests/<name>/test.toml`: the machines and client hosts of one test.
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;
use std::path::{Path, PathBuf};
use toml_edit::{DocumentMut, Item, Table, TableLike};

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
    /// `[parameters]`: the knobs a run may turn (`--param NAME=VALUE`), in file order.
    pub parameters: Vec<Parameter>,
}

/// One test parameter: the script reads `value` with `param("name")`;
/// results.json records it next to its default.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parameter {
    pub name: String,
    /// The default unless `--param` set it.
    pub value: ParamValue,
    pub default: ParamValue,
    pub description: Option<String>,
}

/// A parameter's value; its type is the default's, and `--param` must match it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl ParamValue {
    /// What a value of this type is, for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            ParamValue::Bool(_) => "a bool (true or false)",
            ParamValue::Int(_) => "an integer",
            ParamValue::Float(_) => "a number",
            ParamValue::Str(_) => "a string",
        }
    }

    /// `text` (from the command line) as a value of this one's type.
    fn parse_same(&self, text: &str) -> Option<ParamValue> {
        match self {
            ParamValue::Bool(_) => text.parse().ok().map(ParamValue::Bool),
            ParamValue::Int(_) => text.parse().ok().map(ParamValue::Int),
            ParamValue::Float(_) => text
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(ParamValue::Float),
            ParamValue::Str(_) => Some(ParamValue::Str(text.to_string())),
        }
    }
}

impl std::fmt::Display for ParamValue {
    /// As in test.toml: strings quoted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x:?}"),
            ParamValue::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl TestSpec {
    /// Apply `--param NAME=VALUE`s: each must name a parameter of test.toml
    /// and parse as its default's type. Checked before anything is built or booted.
    pub fn set_parameters(&mut self, given: &[(String, String)]) -> Result<(), String> {
        for (name, text) in given {
            let known = self.parameter_names();
            let Some(p) = self.parameters.iter_mut().find(|p| &p.name == name) else {
                return Err(format!(
                    "--param {name}={text}: {} declares no parameter {name:?}; {known}",
                    self.dir.join("test.toml").display()
                ));
            };
            p.value = p.default.parse_same(text).ok_or_else(|| {
                format!(
                    "--param {name}={text}: {name} is {} (its default is {}), and {text:?} is not",
                    p.default.kind(),
                    p.default
                )
            })?;
        }
        Ok(())
    }

    /// "its parameters: a, b" (or that it has none), for errors.
    pub fn parameter_names(&self) -> String {
        parameter_names(&self.parameters)
    }
}

pub fn parameter_names(params: &[Parameter]) -> String {
    if params.is_empty() {
        "it has none ([parameters] in test.toml)".into()
    } else {
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        format!("its parameters: {}", names.join(", "))
    }
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
    known_keys(
        root,
        "",
        &["test", "machines", "network", "clients", "parameters"],
    )?;
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
    let parameters = parameters(root)?;
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
        parameters,
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

/// `name = default`, or `[parameters.name]` with `default` and `description`.
fn parameters(root: &Table) -> Result<Vec<Parameter>, String> {
    let Some(table) = optional_table(root, "parameters")? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (name, item) in table.iter() {
        check_name(name, "parameter")?;
        let ctx = format!("parameters.{name}");
        let (default, description) = match item.as_table_like() {
            Some(t) => {
                known_keys(t, &format!("{ctx}."), &["default", "description"])?;
                let default = t
                    .get("default")
                    .ok_or_else(|| format!("{ctx} needs a default, e.g. default = 200"))?;
                (param_value(default, &ctx)?, description(t, &ctx)?)
            }
            None => (param_value(item, &ctx)?, None),
        };
        out.push(Parameter {
            name: name.to_string(),
            value: default.clone(),
            default,
            description,
        });
    }
    Ok(out)
}

fn param_value(item: &Item, ctx: &str) -> Result<ParamValue, String> {
    let v = item.as_value();
    if let Some(i) = v.and_then(|v| v.as_integer()) {
        Ok(ParamValue::Int(i))
    } else if let Some(f) = v.and_then(|v| v.as_float()) {
        Ok(ParamValue::Float(f))
    } else if let Some(b) = v.and_then(|v| v.as_bool()) {
        Ok(ParamValue::Bool(b))
    } else if let Some(s) = v.and_then(|v| v.as_str()) {
        Ok(ParamValue::Str(s.to_string()))
    } else {
        Err(format!(
            "{ctx}: a parameter's default is an integer, a number, a string or a bool"
        ))
    }
}

fn description(t: &dyn TableLike, ctx: &str) -> Result<Option<String>, String> {
    match t.get("description") {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| format!("{ctx}.description must be a string")),
    }
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

/// Names become script variables (`server.succeed(...)`), `param("name")` keys and interface suffixes.
fn check_name(name: &str, what: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 32;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name {name:?} must match [a-z][a-z0-9_]* (scripts use it by that name)"
        ))
    }
}

fn known_keys(t: &dyn TableLike, ctx: &str, keys: &[&str]) -> Result<(), String> {
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

    const PARAMS: &str = r#"
[machines.server]

[parameters]
messages = 2                   # a bare default: undocumented

[parameters.load_clients]
default = 200
description = "XMPP clients that log in at once"

[parameters.slow]
default = 1.5

[parameters.mode]
default = "fast"
description = "how"

[parameters.faults]
default = true
"#;

    #[test]
    fn parameters_have_typed_defaults_and_descriptions() {
        let s = parse(PARAMS, Path::new("t")).unwrap();
        let names: Vec<&str> = s.parameters.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["messages", "load_clients", "slow", "mode", "faults"]
        );
        let p = &s.parameters[1];
        assert_eq!(p.value, ParamValue::Int(200));
        assert_eq!(p.default, ParamValue::Int(200));
        assert_eq!(
            p.description.as_deref(),
            Some("XMPP clients that log in at once")
        );
        assert_eq!(s.parameters[0].description, None);
        assert_eq!(s.parameters[2].value, ParamValue::Float(1.5));
        assert_eq!(s.parameters[3].value, ParamValue::Str("fast".into()));
        assert_eq!(s.parameters[4].value, ParamValue::Bool(true));
        assert!(
            parse("[machines.s]", Path::new("t"))
                .unwrap()
                .parameters
                .is_empty()
        );
    }

    #[test]
    fn a_param_override_takes_the_defaults_type_or_is_refused() {
        let mut s = parse(PARAMS, Path::new("t")).unwrap();
        let given = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        s.set_parameters(&given(&[
            ("load_clients", "50"),
            ("slow", "3"),
            ("mode", "x y"),
            ("faults", "false"),
        ]))
        .unwrap();
        assert_eq!(s.parameters[1].value, ParamValue::Int(50));
        assert_eq!(s.parameters[1].default, ParamValue::Int(200));
        assert_eq!(s.parameters[2].value, ParamValue::Float(3.0));
        assert_eq!(s.parameters[3].value, ParamValue::Str("x y".into()));
        assert_eq!(s.parameters[4].value, ParamValue::Bool(false));

        let err = s
            .set_parameters(&given(&[("load_clients", "lots")]))
            .unwrap_err();
        assert_eq!(
            err,
            "--param load_clients=lots: load_clients is an integer (its default is 200), and \"lots\" is not"
        );
        let err = s.set_parameters(&given(&[("faults", "yes")])).unwrap_err();
        assert!(err.contains("a bool (true or false)"), "{err}");
        let err = s.set_parameters(&given(&[("clients", "5")])).unwrap_err();
        assert!(
            err.contains("declares no parameter \"clients\"")
                && err.contains("its parameters: messages, load_clients, slow, mode, faults"),
            "{err}"
        );
        let mut none = parse("[machines.s]", Path::new("t")).unwrap();
        let err = none.set_parameters(&given(&[("x", "1")])).unwrap_err();
        assert!(err.contains("it has none"), "{err}");
    }

    #[test]
    fn parameter_mistakes_are_named() {
        let err = |t: &str| parse(&format!("[machines.s]\n{t}"), Path::new("x")).unwrap_err();
        assert!(
            err("[parameters.n]\ndescription = \"d\"").contains("parameters.n needs a default")
        );
        assert!(
            err("[parameters.n]\ndefault = 1\ndescr = \"d\"")
                .contains("unknown key parameters.n.descr")
        );
        assert!(err("[parameters]\nn = [1]").contains("integer, a number, a string or a bool"));
        assert!(err("[parameters]\nN = 1").contains("parameter name \"N\""));
        assert!(
            err("[parameters.n]\ndefault = 1\ndescription = 2")
                .contains("description must be a string")
        );
    }
}
