//! The test language: Rhai scripts (`vm-tests/<name>/test.rhai`) that read like
//! the NixOS test driver's Python: `server.succeed("ss -tlnH")`,
//! `trusted.fail("curl ...")`, `subtest("name", || { ... })`.
use super::copy;
use super::interrupt;
use super::machine::{self, Client, DEFAULT_COMMAND_SECS, Machine, Runner};
use super::protocol::Outcome;
use super::results::Results;
use super::spec::{ParamValue, Parameter};
use rhai::{Dynamic, Engine, EvalAltResult, FnPtr, INT, Map, NativeCallContext, Position, Scope};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Default limit of the wait_* verbs (services start slowly under TCG).
const DEFAULT_WAIT_SECS: u64 = 900;

pub(super) type Fallible<T> = Result<T, Box<EvalAltResult>>;

/// A machine or client as the script sees it: a shared handle (closures capture it).
pub struct Handle<T>(pub Arc<Mutex<T>>);

impl<T> Clone for Handle<T> {
    fn clone(&self) -> Self {
        Handle(Arc::clone(&self.0))
    }
}

impl<T> Handle<T> {
    pub fn new(t: T) -> Self {
        Handle(Arc::new(Mutex::new(t)))
    }
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What every verb needs besides its machine.
pub struct Context {
    pub results: Mutex<Results>,
    pub test_dir: PathBuf,
    pub out_dir: PathBuf,
    pub deadline: Instant,
    pub machines: Vec<Handle<Machine>>,
    /// test.toml's `[parameters]`, with `--param`s applied: `param("name")`.
    pub parameters: Vec<Parameter>,
    /// Set by `run`: the script's AST and the client hosts (verbs.rs).
    pub script: Mutex<Option<super::verbs::ScriptState>>,
}

impl Context {
    pub fn results(&self) -> MutexGuard<'_, Results> {
        self.results
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run one verb, log it, and record it in results.json.
    pub(super) fn record<T>(
        &self,
        target: &str,
        action: &str,
        detail: &str,
        f: impl FnOnce() -> Result<T, String>,
    ) -> Fallible<T> {
        eprintln!("[{target}] {action} {detail}");
        let started = Instant::now();
        let r = f();
        let err = r.as_ref().err().map(String::as_str);
        self.results().step(target, action, detail, started, err);
        r.map_err(|e| e.into())
    }
}

pub fn secs(n: INT, what: &str) -> Result<u64, String> {
    u64::try_from(n).map_err(|_| format!("{what} must not be negative (got {n})"))
}

/// Build the engine with every verb registered.
pub fn engine(ctx: &Arc<Context>) -> Engine {
    let mut engine = Engine::new();
    engine.set_max_expr_depths(256, 256);
    engine.on_print(|s| eprintln!("{s}"));
    engine.on_debug(|s, _, pos| eprintln!("debug ({pos}): {s}"));
    let c = Arc::clone(ctx);
    engine.on_progress(move |ops| {
        if ops % 256 != 0 {
            return None;
        }
        if interrupt::requested() {
            return Some("interrupted (SIGINT/SIGTERM)".into());
        }
        (Instant::now() >= c.deadline)
            .then(|| "the test's time limit ([test] timeout in test.toml) ran out".into())
    });
    register_runner::<Machine>(&mut engine, ctx, "Machine");
    register_runner::<Client>(&mut engine, ctx, "Client");
    register_machine(&mut engine, ctx);
    register_addresses(&mut engine);
    register_client(&mut engine, ctx);
    register_globals(&mut engine, ctx);
    super::verbs::register(&mut engine, ctx);
    engine
}

/// Verbs that machines and client hosts share.
fn register_runner<T: Runner + Send + 'static>(
    engine: &mut Engine,
    ctx: &Arc<Context>,
    type_name: &str,
) {
    engine.register_type_with_name::<Handle<T>>(type_name);
    engine.register_get("name", |h: &mut Handle<T>| h.lock().label());

    let c = Arc::clone(ctx);
    let succeed = move |h: &mut Handle<T>, cmd: &str, limit: INT| -> Fallible<String> {
        let mut r = h.lock();
        c.record(&r.label(), "succeed", cmd, || {
            machine::succeed(&mut *r, cmd, secs(limit, "timeout")?)
        })
    };
    let s2 = succeed.clone();
    engine.register_fn("succeed", move |h: &mut Handle<T>, cmd: &str| {
        s2(h, cmd, DEFAULT_COMMAND_SECS as INT)
    });
    engine.register_fn("succeed", succeed);

    let c = Arc::clone(ctx);
    let fail = move |h: &mut Handle<T>, cmd: &str, limit: INT| -> Fallible<String> {
        let mut r = h.lock();
        c.record(&r.label(), "fail", cmd, || {
            machine::fail(&mut *r, cmd, secs(limit, "timeout")?)
        })
    };
    let f2 = fail.clone();
    engine.register_fn("fail", move |h: &mut Handle<T>, cmd: &str| {
        f2(h, cmd, DEFAULT_COMMAND_SECS as INT)
    });
    engine.register_fn("fail", fail);

    let c = Arc::clone(ctx);
    let execute = move |h: &mut Handle<T>, cmd: &str, limit: INT| -> Fallible<Map> {
        let mut r = h.lock();
        c.record(&r.label(), "execute", cmd, || {
            r.execute(cmd, secs(limit, "timeout")?).map(outcome_map)
        })
    };
    let e2 = execute.clone();
    engine.register_fn("execute", move |h: &mut Handle<T>, cmd: &str| {
        e2(h, cmd, DEFAULT_COMMAND_SECS as INT)
    });
    engine.register_fn("execute", execute);

    for (verb, want) in [("wait_until_succeeds", true), ("wait_until_fails", false)] {
        let c = Arc::clone(ctx);
        let wait = move |h: &mut Handle<T>, cmd: &str, timeout: INT| -> Fallible<String> {
            let mut r = h.lock();
            c.record(&r.label(), verb, cmd, || {
                machine::wait_until(&mut *r, cmd, secs(timeout, "timeout")?, want)
            })
        };
        let w2 = wait.clone();
        engine.register_fn(verb, move |h: &mut Handle<T>, cmd: &str| {
            w2(h, cmd, DEFAULT_WAIT_SECS as INT)
        });
        engine.register_fn(verb, wait);
    }
}

fn outcome_map(o: Outcome) -> Map {
    let mut m = Map::new();
    m.insert("code".into(), Dynamic::from(o.code as INT));
    m.insert("stdout".into(), o.stdout_text().into());
    m.insert("stderr".into(), o.stderr_text().into());
    m
}

/// Verbs only VMs have: power, units, ports, files.
fn register_machine(engine: &mut Engine, ctx: &Arc<Context>) {
    type M = Handle<Machine>;
    engine.register_fn("is_up", |h: &mut M| h.lock().is_up());

    let c = Arc::clone(ctx);
    engine.register_fn("start", move |h: &mut M| -> Fallible<()> {
        let mut m = h.lock();
        let name = m.name.clone();
        c.record(&name, "start", "", || m.start().map(|_| ()))
    });
    let c = Arc::clone(ctx);
    engine.register_fn("shutdown", move |h: &mut M| -> Fallible<()> {
        let mut m = h.lock();
        let name = m.name.clone();
        c.record(&name, "shutdown", "", || m.shutdown())
    });
    let c = Arc::clone(ctx);
    engine.register_fn("reboot", move |h: &mut M| -> Fallible<()> {
        let mut m = h.lock();
        let name = m.name.clone();
        c.record(&name, "reboot", "", || m.reboot().map(|_| ()))
    });
    let c = Arc::clone(ctx);
    engine.register_fn("crash", move |h: &mut M| -> Fallible<()> {
        let mut m = h.lock();
        let name = m.name.clone();
        c.record(&name, "crash", "", || {
            m.crash();
            Ok(())
        })
    });

    let c = Arc::clone(ctx);
    engine.register_fn("check_layout", move |h: &mut M| -> Fallible<String> {
        let mut m = h.lock();
        let name = m.name.clone();
        c.record(&name, "check_layout", "", || {
            let l = m.check_layout(&c.out_dir)?;
            Ok(if l.skipped.is_empty() {
                format!(
                    "{} partitions and {} mounts as declared",
                    l.partitions.len(),
                    l.mounts.len()
                )
            } else {
                l.skipped
            })
        })
    });

    let c = Arc::clone(ctx);
    let unit = move |h: &mut M, unit: &str, timeout: INT| -> Fallible<()> {
        let mut m = h.lock();
        let name = m.name.clone();
        c.record(&name, "wait_for_unit", unit, || {
            machine::wait_for_unit(&mut m, unit, secs(timeout, "timeout")?)
        })
    };
    let u2 = unit.clone();
    engine.register_fn("wait_for_unit", move |h: &mut M, u: &str| {
        u2(h, u, DEFAULT_WAIT_SECS as INT)
    });
    engine.register_fn("wait_for_unit", unit);

    let c = Arc::clone(ctx);
    let port = move |h: &mut M, port: INT, timeout: INT| -> Fallible<()> {
        let mut m = h.lock();
        let name = m.name.clone();
        c.record(&name, "wait_for_open_port", &port.to_string(), || {
            let p = u16::try_from(port).map_err(|_| format!("port {port} is not in 0..65535"))?;
            machine::wait_for_open_port(&mut m, p, secs(timeout, "timeout")?)
        })
    };
    let p2 = port.clone();
    engine.register_fn("wait_for_open_port", move |h: &mut M, p: INT| {
        p2(h, p, DEFAULT_WAIT_SECS as INT)
    });
    engine.register_fn("wait_for_open_port", port);

    let c = Arc::clone(ctx);
    let console = move |h: &mut M, pattern: &str, timeout: INT| -> Fallible<String> {
        let mut m = h.lock();
        let name = m.name.clone();
        c.record(&name, "wait_for_console_text", pattern, || {
            m.wait_for_console_text(pattern, secs(timeout, "timeout")?)
        })
    };
    let c2 = console.clone();
    engine.register_fn("wait_for_console_text", move |h: &mut M, p: &str| {
        c2(h, p, DEFAULT_WAIT_SECS as INT)
    });
    engine.register_fn("wait_for_console_text", console);

    let c = Arc::clone(ctx);
    engine.register_fn(
        "copy_to_vm",
        move |h: &mut M, host: &str, guest: &str| -> Fallible<()> {
            let mut m = h.lock();
            let name = m.name.clone();
            let src = resolve(&c.test_dir, host);
            c.record(
                &name,
                "copy_to_vm",
                &format!("{} -> {guest}", src.display()),
                || copy::to_vm(&mut *m, &src, guest),
            )
        },
    );
    let c = Arc::clone(ctx);
    engine.register_fn(
        "copy_from_vm",
        move |h: &mut M, guest: &str, host: &str| -> Fallible<()> {
            let mut m = h.lock();
            let name = m.name.clone();
            let dst = resolve(&c.out_dir, host);
            c.record(
                &name,
                "copy_from_vm",
                &format!("{guest} -> {}", dst.display()),
                || copy::from_vm(&mut *m, guest, &dst),
            )
        },
    );
}

/// Verbs only client hosts have.
fn register_client(engine: &mut Engine, ctx: &Arc<Context>) {
    let c = Arc::clone(ctx);
    engine.register_fn(
        "start_background",
        move |h: &mut Handle<Client>, cmd: &str| -> Fallible<()> {
            let mut client = h.lock();
            let name = client.name.clone();
            let log = c
                .out_dir
                .join(format!("{name}.background{}.log", client.spawned.len()));
            c.record(&name, "start_background", cmd, || client.spawn(cmd, &log))
        },
    );
}

/// `ipv4` / `ipv6` of machines and clients: the addresses from test.toml
/// without prefix length, or `()` when test.toml gives none.
fn register_addresses(engine: &mut Engine) {
    fn addr(a: &Option<String>) -> Dynamic {
        a.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT)
    }
    engine.register_get("ipv4", |h: &mut Handle<Machine>| addr(&h.lock().ipv4));
    engine.register_get("ipv6", |h: &mut Handle<Machine>| addr(&h.lock().ipv6));
    engine.register_get("ipv4", |h: &mut Handle<Client>| addr(&h.lock().ipv4));
    engine.register_get("ipv6", |h: &mut Handle<Client>| addr(&h.lock().ipv6));
}

/// Host paths: relative ones are taken from the test folder (copy_to_vm) or
/// the output folder (copy_from_vm).
pub(super) fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn register_globals(engine: &mut Engine, ctx: &Arc<Context>) {
    let c = Arc::clone(ctx);
    engine.register_fn(
        "subtest",
        move |nc: NativeCallContext, name: &str, body: FnPtr| -> Fallible<Dynamic> {
            eprintln!("=== subtest: {name}");
            let started = Instant::now();
            c.results().open.push(name.to_string());
            let r = body.call_within_context::<Dynamic>(&nc, ());
            let err = r.as_ref().err().map(|e| root_message(e));
            let mut res = c.results();
            res.open.pop();
            res.subtest(name, started, err.as_deref());
            let _ = res.save();
            drop(res);
            eprintln!(
                "=== subtest {name}: {} ({:.1}s)",
                if r.is_ok() { "ok" } else { "FAILED" },
                started.elapsed().as_secs_f64()
            );
            r
        },
    );
    engine.register_fn("log", |msg: &str| eprintln!("{msg}"));
    engine.register_fn("sleep", |s: INT| -> Fallible<()> {
        let end = Instant::now() + Duration::from_secs(secs(s, "sleep seconds")?);
        while Instant::now() < end {
            interrupt::check()?;
            std::thread::sleep(
                Duration::from_millis(100).min(end.saturating_duration_since(Instant::now())),
            );
        }
        Ok(())
    });
    engine.register_fn("assert", |ok: bool, msg: &str| -> Fallible<()> {
        if ok {
            Ok(())
        } else {
            Err(format!("assertion failed: {msg}").into())
        }
    });
    engine.register_fn("fail_test", |msg: &str| -> Fallible<()> {
        Err(msg.to_string().into())
    });
    let c = Arc::clone(ctx);
    engine.register_fn("out_dir", move || c.out_dir.to_string_lossy().into_owned());
    let c = Arc::clone(ctx);
    engine.register_fn("test_dir", move || {
        c.test_dir.to_string_lossy().into_owned()
    });
    let c = Arc::clone(ctx);
    engine.register_fn("param", move |name: &str| -> Fallible<Dynamic> {
        Ok(param(&c.parameters, name)?)
    });
    let c = Arc::clone(ctx);
    engine.register_fn("start_all", move || -> Fallible<()> { start_all(&c) });
    register_verdict(engine, ctx, "lynis_check", lynis_check);
    register_verdict(engine, ctx, "controls_check", controls_check);
}

/// `param("name")`: the value of a test.toml parameter, typed as its default.
fn param(params: &[Parameter], name: &str) -> Result<Dynamic, String> {
    let p = params.iter().find(|p| p.name == name).ok_or_else(|| {
        format!(
            "param({name:?}): test.toml declares no parameter {name:?}; {}",
            super::spec::parameter_names(params)
        )
    })?;
    Ok(match &p.value {
        ParamValue::Bool(b) => Dynamic::from_bool(*b),
        ParamValue::Int(i) => Dynamic::from_int(*i as INT),
        ParamValue::Float(f) => Dynamic::from_float(*f),
        ParamValue::Str(s) => s.clone().into(),
    })
}

/// A verdict on files of the output folder (a report the guest wrote, and
/// the build's config.json): the summary when it passes, every failure when
/// not. Recorded as a host step like any other verb.
type Verdict = fn(&Path, &str, &str) -> Result<String, String>;

fn register_verdict(engine: &mut Engine, ctx: &Arc<Context>, name: &'static str, judge: Verdict) {
    let c = Arc::clone(ctx);
    engine.register_fn(name, move |file: &str, config: &str| -> Fallible<String> {
        c.record("host", name, file, || judge(&c.out_dir, file, config))
    });
}

fn passed_or_failed(passed: bool, message: String) -> Result<String, String> {
    if passed { Ok(message) } else { Err(message) }
}

/// The Lynis verdict (src/lynis.rs, the rule the report shows too).
fn lynis_check(out_dir: &Path, report: &str, config: &str) -> Result<String, String> {
    let v = crate::lynis::judge_files(&out_dir.join(report), &out_dir.join(config))?;
    passed_or_failed(v.passed, v.message())
}

/// The benchmark-controls verdict (src/compliance.rs, the rule the report shows too).
fn controls_check(out_dir: &Path, results: &str, config: &str) -> Result<String, String> {
    let v = crate::compliance::judge_files(&out_dir.join(results), &out_dir.join(config))?;
    passed_or_failed(v.passed, v.message())
}

/// Launch every machine first, then wait for each: boots overlap.
fn start_all(ctx: &Context) -> Fallible<()> {
    let started = Instant::now();
    for h in &ctx.machines {
        let mut m = h.lock();
        let name = m.name.clone();
        ctx.record(&name, "launch", "", || m.launch())?;
    }
    for h in &ctx.machines {
        let mut m = h.lock();
        let name = m.name.clone();
        ctx.record(
            &name,
            "start",
            &format!(
                "(start_all, {:.1}s so far)",
                started.elapsed().as_secs_f64()
            ),
            || m.await_ready().map(|_| ()),
        )?;
    }
    Ok(())
}

/// The innermost message of a (possibly nested) script error, with its line.
pub fn root_message(err: &EvalAltResult) -> String {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => root_message(inner),
        EvalAltResult::ErrorRuntime(value, pos) => with_pos(value.to_string(), *pos),
        EvalAltResult::ErrorTerminated(value, pos) => with_pos(format!("stopped: {value}"), *pos),
        other => other.to_string(),
    }
}

fn with_pos(msg: String, pos: Position) -> String {
    match pos.line() {
        Some(line) => format!("{msg}\n(test.rhai line {line})"),
        None => msg,
    }
}

/// Compile and run a script with the machines and clients as variables.
pub fn run(ctx: &Arc<Context>, source: &str, clients: &[Handle<Client>]) -> Result<(), String> {
    let engine = engine(ctx);
    let ast = engine
        .compile(source)
        .map_err(|e| format!("test.rhai: {e}"))?;
    *ctx.script.lock().unwrap_or_else(|p| p.into_inner()) = Some(super::verbs::ScriptState {
        ast: ast.clone(),
        clients: clients.to_vec(),
    });
    let mut scope = Scope::new();
    for m in &ctx.machines {
        let name = m.lock().name.clone();
        scope.push(name, m.clone());
    }
    for c in clients {
        let name = c.lock().name.clone();
        scope.push(name, c.clone());
    }
    engine
        .run_ast_with_scope(&mut scope, &ast)
        .map_err(|e| root_message(&e))
}

/// The script API against "guests" that are the real backdoor script run on
/// this host (no QEMU): every verb, error messages, results.json.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmtest::qemu::Backend;

    struct Fixture {
        ctx: Arc<Context>,
        clients: Vec<Handle<Client>>,
        dir: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("modules/test_backdoor/backdoor.sh.tera");
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let backend = Backend::Local {
            script,
            work_dir: work,
        };
        let mut m = Machine::new("server", backend, Duration::from_secs(30));
        m.ipv4 = Some("192.168.77.10".into());
        // A "client" that runs in the host's own namespace is enough to test the API.
        let client = Client::new("trusted", "", Some("192.168.77.20".into()), None);
        let ctx = Arc::new(Context {
            results: Mutex::new(Results::new("unit", "", dir.path())),
            test_dir: dir.path().to_path_buf(),
            out_dir: dir.path().to_path_buf(),
            deadline: Instant::now() + Duration::from_secs(120),
            machines: vec![Handle::new(m)],
            parameters: Vec::new(),
            script: Mutex::new(None),
        });
        Fixture {
            ctx,
            clients: vec![Handle::new(client)],
            dir,
        }
    }

    fn run_script(f: &Fixture, source: &str) -> Result<(), String> {
        run(&f.ctx, source, &[])
    }

    #[test]
    fn verbs_work_and_are_recorded() {
        let f = fixture();
        let src = r#"
            server.start();
            assert(server.name == "server" && server.ipv4 == "192.168.77.10", "properties");
            subtest("basics", || {
                let out = server.succeed("echo hello; echo noise >&2");
                assert(out == "hello\n", `stdout only: ${out}`);
                server.fail("exit 1");
                let r = server.execute("printf 'a\nb'; exit 5");
                assert(r.code == 5 && r.stdout == "a\nb", `execute: ${r}`);
                let big = server.succeed("head -c 1000000 /dev/zero | tr '\\0' x");
                assert(big.len() == 1000000, `1 MB of output arrives whole: ${big.len()}`);
                let t = server.execute("sleep 20", 1);
                assert(t.code == 124, `time limit: ${t}`);
            });
            subtest("waits", || {
                let flag = `${out_dir()}/flag`;
                server.succeed(`(sleep 1; touch ${flag}) >/dev/null 2>&1 &`);
                server.wait_until_succeeds(`test -e ${flag}`, 20);
                server.wait_until_fails(`rm ${flag}`, 20);
                sleep(0);
            });
            subtest("copies", || {
                server.succeed(`mkdir -p ${out_dir()}/src/d && printf x > ${out_dir()}/src/d/f && chmod 0640 ${out_dir()}/src/d/f`);
                server.copy_to_vm("src", `${out_dir()}/in-guest`);
                assert(server.succeed(`stat -c %a ${out_dir()}/in-guest/d/f`) == "640\n", "mode kept");
                server.copy_from_vm(`${out_dir()}/in-guest`, "back");
                assert(server.succeed(`cat ${out_dir()}/back/d/f`) == "x", "copied back");
            });
            server.reboot();
            server.succeed("true");
            server.shutdown();
            assert(!server.is_up(), "down");
        "#;
        run_script(&f, src).unwrap();
        let res = f.ctx.results();
        assert_eq!(res.subtests.len(), 3);
        assert!(res.subtests.iter().all(|s| s.passed));
        assert!(
            res.steps.iter().any(|s| s.action == "copy_to_vm"
                && s.ok
                && s.subtest.as_deref() == Some("copies"))
        );
        assert!(f.dir.path().join("results.json").exists());
    }

    #[test]
    fn a_failing_command_fails_the_test_with_its_output_and_line() {
        let f = fixture();
        let src = "subtest(\"outer\", || {\n  server.succeed(\"echo visible-out; echo visible-err >&2; exit 3\");\n});";
        let err = run_script(&f, src).unwrap_err();
        assert!(
            err.contains("server: command failed (exit code 3)"),
            "{err}"
        );
        assert!(
            err.contains("visible-out") && err.contains("visible-err"),
            "{err}"
        );
        assert!(err.contains("test.rhai line 2"), "{err}");
        let res = f.ctx.results();
        assert_eq!(res.subtests[0].name, "outer");
        assert!(!res.subtests[0].passed);
        assert!(res.steps.iter().any(|s| !s.ok && s.action == "succeed"));
    }

    #[test]
    fn fail_and_waits_report_what_they_awaited() {
        let f = fixture();
        let err = run_script(&f, r#"server.fail("echo oops")"#).unwrap_err();
        assert!(
            err.contains("succeeded but was expected to fail") && err.contains("oops"),
            "{err}"
        );
        let err =
            run_script(&f, r#"server.wait_until_succeeds("echo try; false", 1)"#).unwrap_err();
        assert!(
            err.contains("did not succeed within 1s") && err.contains("try"),
            "{err}"
        );
        let err = run_script(&f, r#"server.succeed("true", -1)"#).unwrap_err();
        assert!(err.contains("must not be negative"), "{err}");
    }

    #[test]
    fn clients_and_asserts() {
        let f = fixture();
        // An empty namespace name makes `ip netns exec` fail: the client's error must say so.
        let props = r#"assert(trusted.ipv4 == "192.168.77.20" && trusted.ipv6 == () && trusted.name == "trusted", "client properties")"#;
        run(&f.ctx, props, &f.clients).unwrap();
        // Registered (the process itself fails at once: there is no namespace "").
        run(&f.ctx, r#"trusted.start_background("sleep 1")"#, &f.clients).unwrap();
        assert!(f.dir.path().join("trusted.background0.log").exists());
        let err = run(&f.ctx, r#"trusted.succeed("true")"#, &f.clients).unwrap_err();
        assert!(err.starts_with("trusted: command failed"), "{err}");
        let err = run_script(&f, r#"assert(1 == 2, "numbers differ")"#).unwrap_err();
        assert!(err.contains("assertion failed: numbers differ"), "{err}");
        let err = run_script(&f, "let x = ;").unwrap_err();
        assert!(err.starts_with("test.rhai:"), "{err}");
    }

    #[test]
    fn the_repository_scripts_compile() {
        let f = fixture();
        let vm_tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm-tests");
        for dir in std::fs::read_dir(vm_tests).unwrap().flatten() {
            for script in std::fs::read_dir(dir.path()).unwrap().flatten() {
                let path = script.path();
                if path.extension().is_some_and(|e| e == "rhai") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    if let Err(e) = engine(&f.ctx).compile(&text) {
                        panic!("{}: {e}", path.display());
                    }
                }
            }
        }
    }

    #[test]
    fn build_data_and_parallel_jobs() {
        let f = fixture();
        std::fs::write(
            f.dir.path().join("server.config.json"),
            r#"{"tls": {"domain": "chat.test", "subdomains": ["upload"]}, "crowdsec": {"capacity": 5}}"#,
        )
        .unwrap();
        std::fs::write(
            f.dir.path().join("server.manifest.json"),
            r#"{"units": {"enable": [{"unit": "a.service"}], "mask": ["b.service"]}}"#,
        )
        .unwrap();
        let src = r#"
            server.start();
            assert(config("tls.domain") == "chat.test", "a string");
            assert(config("crowdsec.capacity") + 1 == 6, "a number");
            assert(server.config("tls.subdomains")[0] == "upload", "an array");
            assert(manifest().units.mask == ["b.service"], "the manifest");
            let r = parallel([|| server.succeed("echo first"), || { sleep(0); 2 }]);
            assert(r[0] == "first\n" && r[1] == 2, `results in order: ${r}`);
            let job = start_job(|| 40 + 2);
            assert(job.wait() == 42, "a job's result");
        "#;
        run_script(&f, src).unwrap();
        let err = run_script(&f, r#"parallel([|| 1, || fail_test("broken job")])"#).unwrap_err();
        assert!(
            err.contains("1 of the parallel jobs failed") && err.contains("broken job"),
            "{err}"
        );
        let err = run_script(&f, r#"config("tls.nothing")"#).unwrap_err();
        assert!(
            err.contains("server.config.json has no tls.nothing"),
            "{err}"
        );
        let err = run_script(&f, "let j = start_job(|| 1); j.wait(); j.wait();").unwrap_err();
        assert!(err.contains("already waited"), "{err}");
    }

    #[test]
    fn the_time_limit_stops_a_looping_script() {
        let mut f = fixture();
        Arc::get_mut(&mut f.ctx).unwrap().deadline = Instant::now();
        let err = run_script(&f, "loop { }").unwrap_err();
        assert!(err.contains("time limit"), "{err}");
    }

    #[test]
    fn lynis_check_passes_a_clean_audit_and_names_every_failure() {
        let f = fixture();
        let dir = f.dir.path();
        std::fs::write(
            dir.join("config.json"),
            r#"{"compliance": {"lynis_min_index": 80, "lynis_accepted": [{"id": "LYNIS", "reason": "Debian's version"}]}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("good.dat"),
            "hardening_index=85\nsuggestion[]=LYNIS|old release|-|-|\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("bad.dat"),
            "hardening_index=70\nwarning[]=FIRE-4512|no rules|-|-|\nsuggestion[]=DEB-0880|Install fail2ban|-|-|\n",
        )
        .unwrap();
        let src = r#"
            let ok = lynis_check("good.dat", "config.json");
            assert(ok.contains("hardening index 85 (minimum 80)"), ok);
        "#;
        run_script(&f, src).unwrap();
        let err = run_script(&f, r#"lynis_check("bad.dat", "config.json");"#).unwrap_err();
        for want in [
            "below compliance.lynis_min_index = 80",
            "FIRE-4512",
            "DEB-0880",
        ] {
            assert!(err.contains(want), "{want} in {err}");
        }
        let err = run_script(&f, r#"lynis_check("none.dat", "config.json");"#).unwrap_err();
        assert!(err.contains("none.dat"), "{err}");
    }

    #[test]
    fn params_are_typed_and_an_unknown_one_names_the_known() {
        let mut f = fixture();
        let spec = crate::vmtest::spec::parse(
            "[machines.server]\n[parameters]\nclients = 200\nratio = 0.5\nname = \"x\"\nfaults = true\n",
            f.dir.path(),
        )
        .unwrap();
        let mut spec = spec;
        spec.set_parameters(&[("clients".into(), "7".into())])
            .unwrap();
        Arc::get_mut(&mut f.ctx).unwrap().parameters = spec.parameters;
        let src = r#"
            assert(type_of(param("clients")) == "i64" && param("clients") + 1 == 8, "an INT, set by --param");
            assert(type_of(param("ratio")) == "f64" && param("ratio") * 2.0 == 1.0, "a FLOAT");
            assert(param("name") == "x" && param("faults") == true, "a string and a bool");
        "#;
        run_script(&f, src).unwrap();
        let err = run_script(&f, r#"param("client")"#).unwrap_err();
        assert!(
            err.contains("declares no parameter \"client\"")
                && err.contains("its parameters: clients, ratio, name, faults"),
            "{err}"
        );
    }

    #[test]
    fn write_json_writes_inside_the_output_folder_only() {
        let f = fixture();
        let src = r#"
            let p = write_json("load/faults.json", #{
                load: #{ clients: 2, ok: true, latency_ms: #{ p50: 1.5 } },
                faults: [ #{ name: "kill", seconds: () } ],
                note: "x",
            });
            assert(p.ends_with("load/faults.json"), p);
            write_json("n.json", 3);
        "#;
        run_script(&f, src).unwrap();
        let text = std::fs::read_to_string(f.dir.path().join("load/faults.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "load": { "clients": 2, "ok": true, "latency_ms": { "p50": 1.5 } },
                "faults": [{ "name": "kill", "seconds": null }],
                "note": "x",
            })
        );
        assert!(text.contains("\n  \"faults\": ["), "pretty: {text}");
        assert_eq!(
            std::fs::read_to_string(f.dir.path().join("n.json")).unwrap(),
            "3\n"
        );
        // No temp file is left beside it.
        let names: Vec<_> = std::fs::read_dir(f.dir.path().join("load"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["faults.json"]);
        assert!(
            f.ctx
                .results()
                .steps
                .iter()
                .any(|s| s.action == "write_json" && s.detail == "load/faults.json" && s.ok)
        );
        for bad in ["/tmp/x.json", "../x.json", "a/../../x.json", ""] {
            let err = run_script(&f, &format!("write_json({bad:?}, 1)")).unwrap_err();
            assert!(
                err.contains("relative to the output folder, without .."),
                "{bad}: {err}"
            );
        }
        let err = run_script(&f, "write_json(\"x.json\", #{ f: || 1 })").unwrap_err();
        assert!(err.contains("f: a Fn cannot be written as JSON"), "{err}");
        std::os::unix::fs::symlink("/tmp", f.dir.path().join("out")).unwrap();
        let err = run_script(&f, "write_json(\"out/x.json\", 1)").unwrap_err();
        assert!(err.contains("outside the output folder"), "{err}");
    }

    #[test]
    fn parse_json_reads_what_clients_print() {
        let f = fixture();
        // Rhai's own parse_json refused this (empty object, nested arrays of maps).
        let src = r#"
            let v = parse_json(`{"ok": true, "bounced": {}, "lost": [{"id": "a", "t": 1.5}], "n": null}`);
            assert(v.ok && v.bounced.len() == 0 && v.lost[0].id == "a" && v.lost[0].t == 1.5 && v.n == (), `${v}`);
        "#;
        run_script(&f, src).unwrap();
        let err = run_script(&f, r#"parse_json("{\"a\": 1,}")"#).unwrap_err();
        assert!(err.contains("parse_json: not JSON"), "{err}");
    }
}
