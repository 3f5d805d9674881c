//! Injection-proof (issue 8, item 2): every string-like option of every module a
//! profile imports is set, one at a time, to each hostile value below. Each must
//! be either rejected (exit 1: `hardroot::type` or `hardroot::template` naming the
//! option, or an assertion) or rendered inert: every line that changed carries
//! the value's marker (no new line or directive), nginx files gain no statement,
//! and the real tools still accept the files (`sshd -t`, `nginx -t`,
//! `iptables-restore --test`, a YAML parser).
//!
//! Generic: the options come from the evaluated profile (the library), so new
//! modules and options are covered without touching this file. Runs on the
//! fixture profile always, and on profiles/system-only.toml and
//! profiles/xmpp-server.toml when they exist.
use crate::common;
use common::*;
use hardroot::diag::{Errors, Located};
use hardroot::eval::Config;
use hardroot::model::types::Type;
use hardroot::render::{Kind, Rendered};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Lower-case so that it survives hostname-like types and `lower` filters.
const MARK: &str = "zqx";

fn hostile_values() -> Vec<String> {
    [
        "zqx\nPermitRootLogin yes",
        "zqx\r\nX-Injected: 1",
        "zqx\0nul",
        "zqx\" ; injected \"",
        "zqx'; DROP TABLE users; --",
        "zqx; return 301 http://192.0.2.1/;",
        "zqx } server { listen 8081;",
        "zqx # PermitRootLogin yes",
        "zqx {{ 7 * 7 }}",
        "zqx{% if true %}x{% endif %}",
        "zqx $(reboot) `id` ${HOME}",
        "zqx\\nPermitRootLogin yes",
        "zqx\u{202E}fdp.exe",
        "zqx.еxample.org", // Cyrillic е
        "zqx:\n  injected: true",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("zqx{}", "A".repeat(100_000))])
    .collect()
}

/// A profile to attack, the module folders it needs, and scratch space.
struct Target {
    profile: PathBuf,
    dirs: Vec<PathBuf>,
    tmp: tempfile::TempDir,
}

fn targets() -> Vec<Target> {
    let mut out = vec![Target {
        profile: fixtures().join("profiles/all-types.toml"),
        dirs: vec![fixtures().join("modules"), fixtures().join("more-modules")],
        tmp: tempfile::tempdir().unwrap(),
    }];
    // xmpp-server imports every module system-only does: attack the larger one only.
    let profile = ["profiles/xmpp-server.toml", "profiles/system-only.toml"]
        .into_iter()
        .map(|p| repo().join(p))
        .find(|p| p.exists());
    if let Some(profile) = profile {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = vec![repo().join("modules")];
        out.push(Target { profile, dirs, tmp });
    }
    out
}

// ---- which options, and the hostile value in their shape -----------------------

fn is_text(t: &Type) -> bool {
    match t {
        Type::Text => true,
        Type::List(inner) | Type::Table(inner) => is_text(inner),
        _ => false,
    }
}

fn stringy(t: &Type) -> bool {
    !matches!(
        t,
        Type::Bool
            | Type::Int { .. }
            | Type::Port
            | Type::Record(_)
            | Type::List(_)
            | Type::Table(_)
    )
}

/// The option's current value with one string replaced or added: one variant per
/// place a string can go (records: each string field of the first entry).
fn variants(ty: &Type, current: &Json, h: &str) -> Vec<(String, Json)> {
    let hv = Json::String(h.to_string());
    match ty {
        t if stringy(t) => vec![(String::new(), hv)],
        Type::List(inner) => {
            let items = current.as_array().cloned().unwrap_or_default();
            if stringy(inner) {
                let mut v = items;
                v.push(hv);
                return vec![("[+]".into(), Json::Array(v))];
            }
            // Records: change the first entry in place (a changed copy added
            // beside it would duplicate its other fields into new lines).
            let Some(first) = items.first() else {
                return Vec::new();
            };
            variants(inner, first, h)
                .into_iter()
                .map(|(label, entry)| {
                    let mut v = items.clone();
                    if let Some(slot) = v.first_mut() {
                        *slot = entry;
                    }
                    (format!("[0]{label}"), Json::Array(v))
                })
                .collect()
        }
        Type::Table(inner) if stringy(inner) => {
            let mut map = current.as_object().cloned().unwrap_or_default();
            map.insert("zqxkey".into(), hv);
            vec![("{zqxkey}".into(), Json::Object(map))]
        }
        Type::Record(fields) => fields
            .iter()
            .filter(|(_, f)| stringy(&f.ty))
            .map(|(name, _)| {
                let mut map = current.as_object().cloned().unwrap_or_default();
                map.insert(name.clone(), hv.clone());
                (format!(".{name}"), Json::Object(map))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A TOML inline value; strings escaped so that TOML itself is never the thing that breaks.
fn toml(v: &Json) -> String {
    match v {
        Json::String(s) => {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
                    c => out.push(c),
                }
            }
            out + "\""
        }
        Json::Array(items) => format!(
            "[{}]",
            items.iter().map(toml).collect::<Vec<_>>().join(", ")
        ),
        Json::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .map(|(k, v)| format!("{} = {}", toml(&Json::String(k.clone())), toml(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

// ---- one attack ------------------------------------------------------------------

struct Case {
    option: String,
    /// `text` options are multi-line by contract: new lines are allowed there,
    /// the real tools still have to accept the file.
    multiline: bool,
    label: String,
    hostile: String,
    value: Json,
    /// For a list that was empty: the list with one harmless marked item.
    /// What a non-empty list switches on (sshd's Match block for
    /// ssh.forwarding_groups) is then the baseline, not an injection.
    switched_on: Option<Json>,
}

enum Outcome {
    Rejected,
    Inert,
    Skipped(String),
    /// Accepted by its type, no injection, but the real tool refuses the file.
    Loose(String),
}

/// Options whose type admits values the real tool then refuses (not an injection:
/// the line holds only the value). Reported, not failed; tighten the type (e.g.
/// `list of enum` of the algorithms OpenSSH knows) and remove the entry.
const KNOWN_LOOSE: &[&str] = &[
    "ssh.ciphers",
    "ssh.kex_algorithms",
    "ssh.macs",
    "ssh.host_key_algorithms",
    "ssh.pubkey_algorithms",
];

/// A profile: the target's with the case's option forced to `value`.
fn forced(t: &Target, case: &Case, value: &Json, dir: &Path, name: &str) -> PathBuf {
    let (module, option) = case.option.split_once('.').unwrap_or_default();
    let profile = dir.join(name);
    let text = format!(
        "[profile]\nimports = [{}]\n\n[force.{module}]\n{option} = {}\n",
        toml(&Json::String(t.profile.display().to_string())),
        toml(value)
    );
    std::fs::write(&profile, text).expect("scratch profile");
    profile
}

fn attack(t: &Target, case: &Case, base: &Rendered, tools: &Tools) -> Result<Outcome, String> {
    let dir = tempfile::tempdir_in(t.tmp.path()).map_err(|e| e.to_string())?;
    let profile = forced(t, case, &case.value, dir.path(), "hostile.toml");
    match hardroot::build::check(&profile, &t.dirs) {
        Err(report) => judge_error(case, &report),
        Ok((_, rendered)) => {
            // (A list whose type refuses the harmless word keeps the profile as the baseline.)
            let switched_on = case.switched_on.as_ref().and_then(|v| {
                let on = forced(t, case, v, dir.path(), "switched-on.toml");
                hardroot::build::check(&on, &t.dirs).ok().map(|(_, r)| r)
            });
            judge_render(case, switched_on.as_ref().unwrap_or(base), &rendered)?;
            match tools.check(case, base, &rendered, dir.path()) {
                Ok(()) => Ok(Outcome::Inert),
                Err(e) => Ok(Outcome::Loose(e)),
            }
        }
    }
}

fn judge_error(case: &Case, report: &miette::Report) -> Result<Outcome, String> {
    let errors: Vec<&Located> = match (
        report.downcast_ref::<Located>(),
        report.downcast_ref::<Errors>(),
    ) {
        (Some(e), _) => vec![e],
        (None, Some(Errors(list))) => list.iter().collect(),
        _ => return Err(format!("not an input error: {report:?}")),
    };
    for e in &errors {
        let names_option = e.message.contains(&case.option);
        match e.code {
            "hardroot::type" | "hardroot::template" if names_option => {
                return Ok(Outcome::Rejected);
            }
            "hardroot::assertion" => return Ok(Outcome::Rejected),
            "hardroot::conflict" => return Ok(Outcome::Skipped(e.message.clone())),
            _ => {}
        }
    }
    Err(format!(
        "rejected, but not as a type error naming the option: {report:?}"
    ))
}

fn files(r: &Rendered) -> BTreeMap<&str, String> {
    r.entries
        .values()
        .filter_map(|e| match &e.kind {
            Kind::File(bytes) => {
                Some((e.path.as_str(), String::from_utf8_lossy(bytes).into_owned()))
            }
            _ => None,
        })
        .collect()
}

/// No line or path appears that does not carry the marker.
fn judge_render(case: &Case, base: &Rendered, got: &Rendered) -> Result<(), String> {
    for path in got.entries.keys() {
        if !base.entries.contains_key(path) && !path.to_lowercase().contains(MARK) {
            return Err(format!("new path /{path} without the marker"));
        }
    }
    let before = files(base);
    for (path, text) in files(got) {
        let old = before.get(path).map(String::as_str).unwrap_or_default();
        for line in new_lines(old, &text) {
            if !case.multiline && !line.to_lowercase().contains(MARK) {
                return Err(format!(
                    "/{path}: line {line:?} appeared without the marker (value {:?})",
                    short(&case.hostile)
                ));
            }
        }
        if path.starts_with("etc/nginx/") {
            for st in new_statements(&statements(old), &statements(&text)) {
                if !st.to_lowercase().contains(MARK) {
                    return Err(format!("/{path}: nginx statement {st:?} appeared"));
                }
            }
        }
    }
    Ok(())
}

/// Lines of `new` not in `old` (as a multiset).
fn new_lines<'a>(old: &str, new: &'a str) -> Vec<&'a str> {
    let mut pool: BTreeMap<&str, usize> = BTreeMap::new();
    for l in old.lines() {
        *pool.entry(l).or_default() += 1;
    }
    new.lines()
        .filter(|l| match pool.get_mut(l) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .collect()
}

fn new_statements(old: &[String], new: &[String]) -> Vec<String> {
    let old_text = old.join("\n");
    let new_text = new.join("\n");
    new_lines(&old_text, &new_text)
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// nginx statements: split on `;`, `{` and `}` outside quotes, comments dropped.
fn statements(conf: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut comment = false;
    for c in conf.chars() {
        if comment {
            comment = c != '\n';
            continue;
        }
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') => {
                comment = true;
                continue;
            }
            (None, ';' | '{' | '}') => {
                cur.push(c);
                out.push(cur.split_whitespace().collect::<Vec<_>>().join(" "));
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

// ---- the real tools --------------------------------------------------------------

struct Tools {
    sshd_key: Option<PathBuf>,
    root: bool,
    nginx_ok: bool,
}

impl Tools {
    fn new(dir: &Path, base: &Rendered) -> Tools {
        let root = unsafe { libc::geteuid() } == 0; // SAFETY: no preconditions
        let mut t = Tools {
            sshd_key: None,
            root,
            nginx_ok: false,
        };
        let key = dir.join("ssh_host_ed25519_key");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .is_ok_and(|s| s.success());
        let privsep = Path::new("/run/sshd").is_dir()
            || (root && std::fs::create_dir_all("/run/sshd").is_ok());
        if made && privsep {
            t.sshd_key = Some(key);
        } else {
            eprintln!("NOTE: no sshd -t (needs ssh-keygen, /run/sshd or root)");
        }
        // nginx -t only when the unmodified config passes on this host.
        t.nginx_ok = files(base).contains_key("etc/nginx/nginx.conf") && t.nginx(base, dir).is_ok();
        t
    }

    fn check(
        &self,
        case: &Case,
        base: &Rendered,
        got: &Rendered,
        dir: &Path,
    ) -> Result<(), String> {
        let before = files(base);
        for (path, text) in files(got) {
            if before.get(path) == Some(&text) {
                continue;
            }
            let file = dir.join(path.replace('/', "_"));
            std::fs::write(&file, &text).map_err(|e| e.to_string())?;
            let result = match path {
                "etc/ssh/sshd_config" => self.sshd(&file),
                "etc/iptables/rules.v4" if self.root => {
                    tool_ok(Command::new("iptables-restore").arg("--test").arg(&file))
                }
                "etc/iptables/rules.v6" if self.root => {
                    tool_ok(Command::new("ip6tables-restore").arg("--test").arg(&file))
                }
                p if p.ends_with(".yml") || p.ends_with(".yaml") => yaml_ok(&file),
                p if p.starts_with("etc/nginx/") && self.nginx_ok => self.nginx(got, dir),
                _ => Ok(()),
            };
            result.map_err(|e| {
                format!(
                    "/{path} with {} = {:?}: {e}",
                    case.option,
                    short(&case.hostile)
                )
            })?;
        }
        Ok(())
    }

    fn sshd(&self, file: &Path) -> Result<(), String> {
        match &self.sshd_key {
            Some(key) => tool_ok(
                Command::new("/usr/sbin/sshd")
                    .arg("-t")
                    .arg("-f")
                    .arg(file)
                    .arg("-h")
                    .arg(key),
            ),
            None => Ok(()),
        }
    }

    /// nginx -t on nginx.conf with the image's TLS and log paths pointed into `dir`.
    fn nginx(&self, r: &Rendered, dir: &Path) -> Result<(), String> {
        let conf = files(r)
            .get("etc/nginx/nginx.conf")
            .cloned()
            .unwrap_or_default();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        if !cert.exists() {
            tool_ok(&mut self_signed_cmd(&key, &cert))?;
        }
        let dh = dir.join("dh.pem");
        let dh_text = files(r)
            .get("etc/hardroot/tls/ffdhe4096.pem")
            .cloned()
            .unwrap_or_default();
        std::fs::write(&dh, dh_text).map_err(|e| e.to_string())?;
        let d = dir.display().to_string();
        let conf = conf
            .replace(
                "/etc/hardroot/tls/fullchain.pem",
                &cert.display().to_string(),
            )
            .replace("/etc/hardroot/tls/privkey.pem", &key.display().to_string())
            .replace("/etc/hardroot/tls/ffdhe4096.pem", &dh.display().to_string())
            .replace("/var/log/nginx/", &format!("{d}/"))
            .replace("/run/nginx.pid", &format!("{d}/nginx.pid"));
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).map_err(|e| e.to_string())?;
        tool_ok(Command::new("nginx").arg("-t").arg("-c").arg(&path))
    }
}

fn tool_ok(cmd: &mut Command) -> Result<(), String> {
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} refused it: {}", text(&o.stderr).trim()))
    }
}

fn yaml_ok(file: &Path) -> Result<(), String> {
    tool_ok(
        Command::new("python3")
            .args(["-c", "import sys, yaml; yaml.safe_load(open(sys.argv[1]))"])
            .arg(file),
    )
}

// ---- the tests -----------------------------------------------------------------

fn cases(config: &Config) -> Vec<Case> {
    let mut out = Vec::new();
    for m in &config.modules {
        for (name, decl) in &m.options {
            let option = format!("{}.{name}", m.name);
            let current = config
                .option(&option)
                .map(|v| v.value.clone())
                .unwrap_or(Json::Null);
            for h in hostile_values() {
                let empty_list = current.as_array().is_some_and(Vec::is_empty);
                for (label, value) in variants(&decl.ty, &current, &h) {
                    out.push(Case {
                        option: option.clone(),
                        multiline: is_text(&decl.ty),
                        label,
                        hostile: h.clone(),
                        value,
                        switched_on: empty_list
                            .then(|| Json::Array(vec![Json::String(format!("{MARK}on"))])),
                    });
                }
            }
        }
    }
    out
}

#[test]
fn hostile_values_in_every_string_option_are_rejected_or_inert() {
    let mut failures = Vec::new();
    for t in targets() {
        let (config, base) = hardroot::build::check(&t.profile, &t.dirs)
            .unwrap_or_else(|e| panic!("{} does not build as it is: {e:?}", t.profile.display()));
        let tools = Tools::new(t.tmp.path(), &base);
        let cases = cases(&config);
        let options: std::collections::BTreeSet<&str> =
            cases.iter().map(|c| c.option.as_str()).collect();
        let results: Vec<(usize, Result<Outcome, String>)> = std::thread::scope(|s| {
            let chunks: Vec<Vec<(usize, &Case)>> = (0..2)
                .map(|k| {
                    cases
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| i % 2 == k)
                        .collect()
                })
                .collect();
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    let (t, base, tools) = (&t, &base, &tools);
                    s.spawn(move || {
                        chunk
                            .into_iter()
                            .map(|(i, c)| (i, attack(t, c, base, tools)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let (mut rejected, mut inert, mut skipped, mut loose) = (0, 0, 0, 0);
        for (i, r) in results {
            let c = &cases[i];
            match r {
                Ok(Outcome::Rejected) => rejected += 1,
                Ok(Outcome::Inert) => inert += 1,
                Ok(Outcome::Skipped(why)) => {
                    skipped += 1;
                    eprintln!("skipped {}{}: {why}", c.option, c.label);
                }
                Ok(Outcome::Loose(e)) if KNOWN_LOOSE.contains(&c.option.as_str()) => {
                    loose += 1;
                    eprintln!("KNOWN LOOSE {}{}: {e}", c.option, c.label);
                }
                Ok(Outcome::Loose(e)) | Err(e) => failures.push(format!(
                    "{}{} = {:?}: {e}",
                    c.option,
                    c.label,
                    short(&c.hostile)
                )),
            }
        }
        eprintln!(
            "{}: {} options, {} attacks: {rejected} rejected, {inert} rendered inert, {skipped} skipped, {loose} known loose",
            t.profile.display(),
            options.len(),
            cases.len()
        );
        assert!(
            cases.len() >= hostile_values().len(),
            "no string option found in {}",
            t.profile.display()
        );
    }
    assert!(
        failures.is_empty(),
        "{} attacks got through:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn templated_profile_values_are_type_checked_after_rendering() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = vec![fixtures().join("more-modules")];
    let run = |name: &str, body: &str| {
        let p = tmp.path().join(format!("{name}.toml"));
        std::fs::write(
            &p,
            format!("[profile]\nimports = [\"kinds\"]\n[kinds]\n{body}\n"),
        )
        .unwrap();
        hardroot::build::check(&p, &dirs)
    };
    // {{ 7*7 }} in a string option is rendered once (it may only read the config) ...
    let (config, _) = run("ok", "name = \"{{ 7 * 7 }}\"").unwrap();
    assert_eq!(
        config.option("kinds.name").unwrap().value,
        Json::String("49".into())
    );
    // ... and its result meets the option's type like any other value.
    for (body, needle) in [
        ("count = \"{{ 7 * 7 }}\"", "49 is out of range"),
        ("name = \"{{ kinds.motd }}\"", "contains a newline"),
        ("host = \"{{ kinds.name }} x\"", "is not a hostname"),
        (
            "name = \"{{ get_env(name='PATH') }}\"",
            "get_env() is not available",
        ),
    ] {
        let e = run("bad", body)
            .err()
            .unwrap_or_else(|| panic!("{body} was accepted"));
        let msg = e
            .downcast_ref::<Located>()
            .map(|l| l.message.clone())
            .unwrap_or_else(|| format!("{e:?}"));
        assert!(msg.contains(needle), "{body}: {msg}");
    }
}
