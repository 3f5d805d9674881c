//! The verbs that speak the product's language (docs/testing.md, "Verbs"):
//! the build's data (`config("tls.domain")`, `manifest()`), `check_units()`,
//! `probe_exposure()`, `probe_tls(port)`, `write_json(file, value)` (a record
//! for the report), `parse_json(text)` (serde_json, not Rhai's map syntax), and `parallel([...])` / `start_job(f)` with real job handles. Global forms act on the test's only machine; with
//! several machines use `server.config(...)` and the like.
use super::machine::{self, Client, Machine, Runner};
use super::probe::{self, Prober};
use super::script::{Context, Fallible, Handle, root_message};
use super::{tls, units};
use crate::exposure::{Addresses, Table};
use rhai::{Array, Dynamic, Engine, FnPtr, INT, Map};
use serde_json::Value;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// What the script run adds to the context: its AST (closures run on other
/// threads need it) and the client hosts.
pub struct ScriptState {
    pub ast: rhai::AST,
    pub clients: Vec<Handle<Client>>,
}

type M = Handle<Machine>;

pub fn json_to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => (i as INT).into(),
            None => Dynamic::from_float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => s.clone().into(),
        Value::Array(a) => Dynamic::from_array(a.iter().map(json_to_dynamic).collect()),
        Value::Object(o) => {
            let mut m = Map::new();
            for (k, v) in o {
                m.insert(k.as_str().into(), json_to_dynamic(v));
            }
            Dynamic::from_map(m)
        }
    }
}

/// The other way: a script's value as JSON (`write_json`). Maps keep Rhai's
/// key order (sorted); what JSON cannot hold is an error naming its type.
fn dynamic_to_json(v: &Dynamic) -> Result<Value, String> {
    let v = v.flatten_clone();
    if v.is_unit() {
        Ok(Value::Null)
    } else if let Ok(b) = v.as_bool() {
        Ok(b.into())
    } else if let Ok(i) = v.as_int() {
        Ok(i.into())
    } else if let Ok(f) = v.as_float() {
        serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| format!("{f} is not a number JSON can hold"))
    } else if v.is_string() || v.is_char() {
        Ok(Value::String(v.to_string()))
    } else if v.is_array() {
        let a = v.cast::<Array>();
        a.iter()
            .map(dynamic_to_json)
            .collect::<Result<_, _>>()
            .map(Value::Array)
    } else if v.is_map() {
        let m = v.cast::<Map>();
        let mut o = serde_json::Map::new();
        for (k, v) in &m {
            o.insert(
                k.to_string(),
                dynamic_to_json(v).map_err(|e| format!("{k}: {e}"))?,
            );
        }
        Ok(Value::Object(o))
    } else {
        Err(format!(
            "a {} cannot be written as JSON (maps, arrays, strings, numbers, bools and () can)",
            v.type_name()
        ))
    }
}

/// `write_json(FILE, VALUE)`: VALUE as pretty JSON in OUT/FILE, for the
/// report (e.g. load-faults.json). FILE stays inside the output folder, and
/// the file appears whole or not at all (temp file + rename): the report
/// may read it while a later subtest still runs.
fn write_json(out_dir: &Path, file: &str, value: &Dynamic) -> Result<String, String> {
    let rel = Path::new(file);
    let inside = !file.is_empty()
        && rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !inside {
        return Err(format!(
            "write_json({file:?}): give a path relative to the output folder, without .. (e.g. \"load-faults.json\")"
        ));
    }
    let json = dynamic_to_json(value).map_err(|e| format!("write_json({file:?}): {e}"))?;
    let path = out_dir.join(rel);
    let dir = path.parent().unwrap_or(out_dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // A symlinked subfolder must not lead out of the output folder either.
    let (real_dir, real_out) = (dir.canonicalize(), out_dir.canonicalize());
    if !matches!((&real_dir, &real_out), (Ok(d), Ok(o)) if d.starts_with(o)) {
        return Err(format!(
            "write_json({file:?}): {} is outside the output folder {}",
            dir.display(),
            out_dir.display()
        ));
    }
    let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())? + "\n";
    let tmp = tempfile::Builder::new()
        .prefix(".write_json.")
        .tempfile_in(dir)
        .map_err(|e| format!("cannot make a temp file in {}: {e}", dir.display()))?;
    std::fs::write(tmp.path(), text)
        .map_err(|e| format!("cannot write {}: {e}", tmp.path().display()))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644));
    tmp.persist(&path)
        .map_err(|e| format!("cannot write {}: {}", path.display(), e.error))?;
    Ok(path.display().to_string())
}

/// OUT/<machine>.<what>.json, written by the driver when it built the image.
fn build_file(ctx: &Context, machine: &str, what: &str) -> Result<(PathBuf, Value), String> {
    let path = ctx.out_dir.join(format!("{machine}.{what}.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {} ({e}): run the test with a PROFILE so the driver builds the image, not --image",
            path.display()
        )
    })?;
    let v =
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    Ok((path, v))
}

/// `config("tls.domain")`: one value of the build's config.json.
fn config_value(ctx: &Context, machine: &str, key: &str) -> Result<Dynamic, String> {
    let (path, v) = build_file(ctx, machine, "config")?;
    let mut at = &v;
    for part in key.split('.') {
        at = at
            .get(part)
            .ok_or_else(|| format!("{} has no {key} (no {part:?})", path.display()))?;
    }
    Ok(json_to_dynamic(at))
}

fn only_machine(ctx: &Context, verb: &str) -> Result<M, String> {
    match ctx.machines.as_slice() {
        [m] => Ok(m.clone()),
        _ => Err(format!(
            "{verb}: the test has {} machines; say which: NAME.{verb}(...)",
            ctx.machines.len()
        )),
    }
}

fn clients(ctx: &Context) -> Vec<Handle<Client>> {
    ctx.script
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|s| s.clients.clone())
        .unwrap_or_default()
}

fn probers(ctx: &Context) -> Vec<Prober> {
    let ip = |a: &Option<String>| a.as_ref().and_then(|a| a.parse().ok());
    clients(ctx)
        .iter()
        .map(|c| {
            let c = c.lock();
            Prober {
                name: c.name.clone(),
                ns: c.ns.clone(),
                ipv4: ip(&c.ipv4),
                ipv6: ip(&c.ipv6),
            }
        })
        .collect()
}

fn check_units(ctx: &Context, h: &M) -> Result<String, String> {
    let name = h.lock().name.clone();
    let (_, manifest) = build_file(ctx, &name, "manifest")?;
    let declared = units::declared(&manifest);
    if declared.is_empty() {
        return Err(format!("{name}.manifest.json declares no units"));
    }
    let mut m = h.lock();
    let out = m.execute(&units::command(&declared), 120)?;
    let (ok, bad, journal) = units::judge(&declared, &out.stdout_text());
    let summary = format!("{} declared units as declared", ok.len());
    if bad.is_empty() {
        return Ok(summary);
    }
    let mut msg = format!(
        "{} unit check(s) failed:\n- {}",
        bad.len(),
        bad.join("\n- ")
    );
    for u in journal.iter().take(5) {
        let log = m
            .execute(&format!("journalctl -b -u {u} -n 12 --no-pager -o cat"), 60)
            .map(|o| o.stdout_text())
            .unwrap_or_default();
        msg.push_str(&format!("\n--- {u}, its last log lines ---\n{log}"));
    }
    Err(msg)
}

fn probe_exposure(ctx: &Context, h: &M, file: &str) -> Result<String, String> {
    let (name, server) = {
        let m = h.lock();
        let a = Addresses {
            ipv4: m.ipv4.clone(),
            ipv6: m.ipv6.clone(),
        };
        (m.name.clone(), a)
    };
    let (_, config) = build_file(ctx, &name, "config")?;
    let table = Table::from_config(&config)?;
    let sockets = probe::parse_ss(&machine::succeed(&mut *h.lock(), probe::GUEST_SOCKETS, 60)?);
    let clients = probers(ctx);
    if clients.is_empty() {
        return Err("probe_exposure needs client hosts ([clients] in test.toml)".into());
    }
    let matrix = probe::probe_exposure(&table, &server, &clients, sockets, || {
        machine::succeed(&mut *h.lock(), probe::GUEST_COUNTERS, 60)
            .map(|t| probe::split_counters(&t))
    })?;
    let path = ctx.out_dir.join(file);
    let text = serde_json::to_string_pretty(&matrix).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n")
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let summary = probe::summary(&matrix);
    if matrix.problems.is_empty() {
        Ok(format!(
            "{summary}\nevery probe as the exposure table says ({})",
            path.display()
        ))
    } else {
        Err(format!(
            "{summary}\n\n{} disagreement(s) with the exposure table ({}):\n- {}",
            matrix.problems.len(),
            path.display(),
            matrix.problems.join("\n- ")
        ))
    }
}

fn probe_tls(ctx: &Context, h: &M, port: INT, ca: Option<&str>) -> Result<String, String> {
    let port = u16::try_from(port).map_err(|_| format!("port {port} is not in 0..65535"))?;
    let (name, v4, v6) = {
        let m = h.lock();
        (m.name.clone(), m.ipv4.clone(), m.ipv6.clone())
    };
    let (_, config) = build_file(ctx, &name, "config")?;
    let table = Table::from_config(&config)?;
    let policy = tls::Policy::from_config(&config, &table, port)?;
    let l = &policy.listener;
    // A client the rule lets through, and the server's addresses it can use.
    for c in probers(ctx) {
        let mut hosts = Vec::new();
        for (v6, server, src) in [(false, &v4, c.ipv4), (true, &v6, c.ipv6)] {
            if let (Some(server), Some(src)) = (server, src)
                && table.passes(l, src)
                && l.binds_family(v6)
            {
                hosts.push(server.clone());
            }
        }
        if !hosts.is_empty() {
            let ca = ca.map(|p| {
                super::script::resolve(&ctx.out_dir, p)
                    .display()
                    .to_string()
            });
            // OUT/tls-PORT.txt: the findings the report's TLS rows read.
            let r = tls::probe(&policy, &c.ns, &hosts, ca.as_deref());
            let path = ctx.out_dir.join(format!("tls-{port}.txt"));
            let text = r.as_ref().unwrap_or_else(|e| e);
            std::fs::write(&path, format!("{text}\n"))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            return r.map(|r| format!("from {}:\n{r}", c.name));
        }
    }
    Err(format!("{}: no client host may reach it", l.label()))
}

/// A closure run on a thread of its own, with an engine of its own.
fn run_closure(ctx: &Arc<Context>, f: FnPtr) -> Result<Running, String> {
    let ast = ctx
        .script
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|s| s.ast.clone())
        .ok_or("parallel/start_job: no script is running")?;
    let c = Arc::clone(ctx);
    Ok(std::thread::spawn(move || {
        let engine = super::script::engine(&c);
        f.call::<Dynamic>(&engine, &ast, ())
            .map_err(|e| root_message(&e))
    }))
}

/// A job started with `start_job(f)`: `wait()` returns its result or its error.
#[derive(Clone)]
pub struct Job(Arc<Mutex<Option<Running>>>);

/// A closure running on a thread of its own.
type Running = JoinHandle<Result<Dynamic, String>>;

fn join(h: Running) -> Result<Dynamic, String> {
    h.join().unwrap_or_else(|_| Err("the job panicked".into()))
}

pub fn register(engine: &mut Engine, ctx: &Arc<Context>) {
    for (verb, what) in [("config", "config"), ("manifest", "manifest")] {
        let c = Arc::clone(ctx);
        let get = move |h: &mut M, key: &str| -> Fallible<Dynamic> {
            let name = h.lock().name.clone();
            if what == "config" {
                Ok(config_value(&c, &name, key)?)
            } else {
                Ok(json_to_dynamic(&build_file(&c, &name, what)?.1))
            }
        };
        let c = Arc::clone(ctx);
        let g = get.clone();
        if what == "config" {
            engine.register_fn(verb, get);
            engine.register_fn(verb, move |key: &str| -> Fallible<Dynamic> {
                g(&mut only_machine(&c, verb)?, key)
            });
        } else {
            let g2 = get.clone();
            engine.register_fn(verb, move |h: &mut M| g2(h, ""));
            engine.register_fn(verb, move || -> Fallible<Dynamic> {
                g(&mut only_machine(&c, verb)?, "")
            });
        }
    }

    let c = Arc::clone(ctx);
    engine.register_fn("check_units", move |h: &mut M| -> Fallible<String> {
        let name = h.lock().name.clone();
        c.record(&name, "check_units", "", || check_units(&c, h))
    });

    let c = Arc::clone(ctx);
    let exposure = move |h: &mut M, file: &str| -> Fallible<String> {
        let name = h.lock().name.clone();
        c.record(&name, "probe_exposure", file, || {
            probe_exposure(&c, h, file)
        })
    };
    let (e1, e2, e3) = (exposure.clone(), exposure.clone(), exposure.clone());
    engine.register_fn("probe_exposure", exposure);
    engine.register_fn("probe_exposure", move |h: &mut M| e1(h, "exposure.json"));
    let c = Arc::clone(ctx);
    let c2 = Arc::clone(ctx);
    engine.register_fn("probe_exposure", move || -> Fallible<String> {
        e2(&mut only_machine(&c, "probe_exposure")?, "exposure.json")
    });
    engine.register_fn("probe_exposure", move |file: &str| -> Fallible<String> {
        e3(&mut only_machine(&c2, "probe_exposure")?, file)
    });

    let c = Arc::clone(ctx);
    let tls_verb = move |h: &mut M, port: INT, ca: &str| -> Fallible<String> {
        let name = h.lock().name.clone();
        let ca = (!ca.is_empty()).then_some(ca);
        c.record(&name, "probe_tls", &port.to_string(), || {
            probe_tls(&c, h, port, ca)
        })
    };
    let (t1, t2, t3) = (tls_verb.clone(), tls_verb.clone(), tls_verb.clone());
    engine.register_fn("probe_tls", tls_verb);
    engine.register_fn("probe_tls", move |h: &mut M, port: INT| t1(h, port, ""));
    let c = Arc::clone(ctx);
    let c2 = Arc::clone(ctx);
    engine.register_fn("probe_tls", move |port: INT| -> Fallible<String> {
        t2(&mut only_machine(&c, "probe_tls")?, port, "")
    });
    engine.register_fn(
        "probe_tls",
        move |port: INT, ca: &str| -> Fallible<String> {
            t3(&mut only_machine(&c2, "probe_tls")?, port, ca)
        },
    );

    let c = Arc::clone(ctx);
    engine.register_fn(
        "write_json",
        move |file: &str, value: Dynamic| -> Fallible<String> {
            c.record("host", "write_json", file, || {
                write_json(&c.out_dir, file, &value)
            })
        },
    );

    // Replaces Rhai's own parse_json, which reads JSON as Rhai map syntax and
    // fails on some of it (an empty object among others): what the clients
    // and guest scripts print is parsed by serde_json, as write_json writes.
    engine.register_fn("parse_json", |text: &str| -> Fallible<Dynamic> {
        let v: Value = serde_json::from_str(text).map_err(|e| {
            format!(
                "parse_json: not JSON ({e}): {}",
                text.chars().take(200).collect::<String>()
            )
        })?;
        Ok(json_to_dynamic(&v))
    });

    let c = Arc::clone(ctx);
    engine.register_fn("parallel", move |jobs: Array| -> Fallible<Array> {
        let mut handles = Vec::new();
        for j in jobs {
            let f = j
                .try_cast::<FnPtr>()
                .ok_or("parallel: every element must be a closure (|| ...)")?;
            handles.push(run_closure(&c, f)?);
        }
        let mut results = Array::new();
        let mut errors = Vec::new();
        for (i, h) in handles.into_iter().enumerate() {
            match join(h) {
                Ok(v) => results.push(v),
                Err(e) => {
                    errors.push(format!("job {i}: {e}"));
                    results.push(Dynamic::UNIT);
                }
            }
        }
        if errors.is_empty() {
            Ok(results)
        } else {
            Err(format!(
                "{} of the parallel jobs failed:\n{}",
                errors.len(),
                errors.join("\n")
            )
            .into())
        }
    });
    engine.register_type_with_name::<Job>("Job");
    let c = Arc::clone(ctx);
    engine.register_fn("start_job", move |f: FnPtr| -> Fallible<Job> {
        Ok(Job(Arc::new(Mutex::new(Some(run_closure(&c, f)?)))))
    });
    engine.register_fn("wait", |j: &mut Job| -> Fallible<Dynamic> {
        let h =
            j.0.lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .ok_or("this job was already waited for")?;
        Ok(join(h)?)
    });
}
