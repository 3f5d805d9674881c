//! VM test driver: QEMU machines, backdoor channel, test networks, vm-tests/* scripts.
//!
//! `hardroot vm-test PROFILE TEST` boots the machines of `TEST/test.toml`, runs
//! `TEST/test.rhai` against them, and leaves serial logs and results.json in the
//! output folder. See docs/testing.md.
mod channel;
mod copy;
mod host;
mod images;
pub mod interrupt;
pub mod layout;
pub mod machine;
mod net;
mod probe;
pub mod protocol;
pub mod qemu;
pub mod results;
pub mod script;
pub mod spec;
mod tls;
mod units;
mod verbs;

use machine::{Client, Machine};
use qemu::{Accel, Backend, BootMode, ImageDir, VmConfig};
use script::{Context, Handle};
use spec::TestSpec;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What `hardroot vm-test` asks.
#[derive(Debug, Clone)]
pub struct VmTestArgs {
    /// Profile of the machine under test (used by machines in test.toml that name no profile or image)
    pub profile: Option<PathBuf>,
    /// Test folder, e.g. vm-tests/xmpp-server (holds test.toml and test.rhai)
    pub test: PathBuf,
    /// Boot this image folder (disk.img, or rootfs.img, vmlinuz, initrd.img) instead of building PROFILE
    pub image: Option<PathBuf>,
    /// Boot rootfs.img with QEMU's -kernel instead of the shipped disk.img
    /// through UEFI firmware: quicker, and the report says the shipped disk was not booted
    pub direct_kernel: bool,
    /// Output folder for serial logs, results.json and copied files [default: out/vm-test/<test>]
    pub out: Option<PathBuf>,
    /// Accelerator: auto tries KVM briefly and falls back to TCG
    pub accel: AccelChoice,
    /// Extra folder of modules, searched before modules/ beside the profile (repeatable)
    pub module_dirs: Vec<PathBuf>,
    /// Cache of Debian bases for the image stage [default: $XDG_CACHE_HOME/hardroot or ~/.cache/hardroot]
    pub cache: Option<PathBuf>,
    /// Run this script of the test folder instead of test.rhai (e.g. bench.rhai)
    pub script: PathBuf,
    /// Serial console lines printed per machine when the test fails
    pub tail: usize,
    /// `--param NAME=VALUE`: test.toml's `[parameters]` this run sets
    pub params: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    Auto,
    Kvm,
    Tcg,
}

/// The output folder a test writes to (it reads TEST/test.toml for the default).
pub fn output_folder(args: &VmTestArgs) -> Option<PathBuf> {
    spec::load(&args.test).ok().map(|spec| out_dir(args, &spec))
}

fn out_dir(args: &VmTestArgs, spec: &TestSpec) -> PathBuf {
    args.out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out/vm-test").join(&spec.name))
}

/// Why `run_test` did not pass: the test itself failed (exit 4), or the driver
/// could not run it (exit 3: no image, no QEMU, not root, interrupted).
#[derive(Debug)]
pub enum Failure {
    Test(String),
    Driver(String),
    /// Building the profile failed: the core's diagnostic, kept for its exit code (1 for a wrong profile).
    Build(miette::Report),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Test(m) | Failure::Driver(m) => f.write_str(m),
            Failure::Build(r) => write!(f, "{r:?}"),
        }
    }
}

impl From<String> for Failure {
    fn from(msg: String) -> Self {
        Failure::Driver(msg)
    }
}

/// What a passed test leaves behind.
#[derive(Debug)]
pub struct Passed {
    pub test: String,
    pub duration_s: f64,
    pub results: PathBuf,
}

/// Run one test; the error text carries the failure, its output and each
/// machine's serial tail.
pub fn run_test(args: &VmTestArgs) -> Result<Passed, Failure> {
    run_test_then(args, &|_, _| {})
}

/// `run_test`, and `after(OUT, WORK)` once the test is over, passed or
/// failed, before the work folder WORK (the images built for the test) is
/// removed: the CLI writes the report there.
pub fn run_test_then(args: &VmTestArgs, after: &dyn Fn(&Path, &Path)) -> Result<Passed, Failure> {
    let started = Instant::now();
    let ready = prepare(args)?;
    let Ready {
        ctx,
        clients,
        network,
        run_dir,
        spec,
        out_dir,
    } = ready;
    let script_path = spec.dir.join(&args.script);
    let source = std::fs::read_to_string(&script_path)
        .map_err(|e| Failure::Driver(format!("cannot read {}: {e}", script_path.display())))?;
    let outcome = script::run(&ctx, &source, &clients);
    let report = finish(&ctx, &spec, started, outcome.as_ref().err());
    after(&out_dir, run_dir.path());
    drop(clients);
    drop(network);
    drop(run_dir);
    match outcome {
        Ok(()) => report.map_err(Failure::Driver)?,
        Err(e) if interrupt::requested() => {
            return Err(Failure::Driver(failure_text(
                &spec.name, &e, &ctx, args.tail, &out_dir,
            )));
        }
        Err(e) => {
            return Err(Failure::Test(failure_text(
                &spec.name, &e, &ctx, args.tail, &out_dir,
            )));
        }
    }
    Ok(Passed {
        test: spec.name,
        duration_s: started.elapsed().as_secs_f64(),
        results: out_dir.join("results.json"),
    })
}

/// Everything set up for the script: machines (not started), network, clients.
/// Fields drop in this order: machines (in `ctx`) before the network, whose taps QEMU holds.
struct Ready {
    ctx: Arc<Context>,
    clients: Vec<Handle<Client>>,
    network: Option<net::Network>,
    run_dir: tempfile::TempDir,
    spec: TestSpec,
    out_dir: PathBuf,
}

fn prepare(args: &VmTestArgs) -> Result<Ready, Failure> {
    let mut spec = spec::load(&args.test)?;
    let out_dir = out_dir(args, &spec);
    // First: `--json` must not print an older run's results.json after a refused --param.
    prepare_out_dir(&out_dir)?;
    spec.set_parameters(&args.params)?;
    // Sockets and disks: a short path (unix sockets cap at 108 bytes), removed at the end.
    let run_dir = tempfile::Builder::new()
        .prefix("hr-vm-")
        .tempdir()
        .map_err(|e| format!("cannot make a temp folder: {e}"))?;
    let mut images = images::Images::new(args, run_dir.path(), &out_dir);
    let images = spec
        .machines
        .iter()
        .map(|m| images.for_machine(m))
        .collect::<Result<Vec<_>, _>>()?;
    let accel = choose_accel(args.accel, &images, run_dir.path());

    // Declared before the machines: dropped after them (QEMU holds the taps).
    let mut network = if spec.network {
        Some(net::Network::create(&spec.clients)?)
    } else {
        None
    };
    let boots: Vec<BootMode> = images
        .iter()
        .map(|i| i.boot_mode(args.direct_kernel))
        .collect();
    let mut results = results::Results::new(&spec.name, &spec.description, &out_dir);
    results.accel = format!("{accel:?}").to_lowercase();
    results.parameters = spec.parameters.clone();
    for ((m, image), mode) in spec.machines.iter().zip(&images).zip(&boots) {
        let info = results.machines.entry(m.name.clone()).or_default();
        info.boot = Some(results::BootInfo::of(image, *mode)?);
    }
    let machines = make_machines(
        &spec,
        &images,
        &boots,
        accel,
        run_dir.path(),
        &out_dir,
        network.as_mut(),
    )?;
    let clients = make_clients(&spec, network.as_ref());

    let ctx = Arc::new(Context {
        results: Mutex::new(results),
        test_dir: spec.dir.clone(),
        out_dir: out_dir.clone(),
        // The limit is the script's: building images does not count.
        deadline: Instant::now() + Duration::from_secs(spec.timeout_secs),
        machines,
        parameters: spec.parameters.clone(),
        script: Mutex::new(None),
    });
    Ok(Ready {
        ctx,
        clients,
        network,
        run_dir,
        spec,
        out_dir,
    })
}

/// Stop every machine, record boot times, write results.json.
fn finish(
    ctx: &Context,
    spec: &TestSpec,
    started: Instant,
    err: Option<&String>,
) -> Result<(), String> {
    for h in &ctx.machines {
        h.lock().crash();
    }
    let mut res = ctx.results();
    for h in &ctx.machines {
        let m = h.lock();
        let info = res.machines.entry(m.name.clone()).or_default();
        info.serial_log = m.serial_log().map(|p| p.display().to_string());
        info.boot_to_ready_s = m.boot_secs.iter().map(|s| results::round(*s)).collect();
        info.kernel_uptime_at_ready_s = m.kernel_secs.iter().map(|s| results::round(*s)).collect();
    }
    res.passed = Some(err.is_none());
    res.error = err.cloned();
    res.duration_s = results::round(started.elapsed().as_secs_f64());
    let saved = res.save();
    if let Err(e) = &saved {
        eprintln!("warning: {e} ({})", spec.name);
    }
    saved
}

fn failure_text(test: &str, err: &str, ctx: &Context, tail: usize, out_dir: &Path) -> String {
    let mut msg = format!("vm-test {test} failed:\n{err}\n");
    for h in &ctx.machines {
        let m = h.lock();
        let Some(log) = m.serial_log() else { continue };
        msg.push_str(&format!(
            "\n--- last {tail} lines of {}'s serial console ({}) ---\n",
            m.name,
            log.display()
        ));
        msg.push_str(&m.serial_tail(tail));
        msg.push('\n');
    }
    msg.push_str(&format!("\nresults and logs: {}", out_dir.display()));
    // CI keeps the head and the tail of a long log: say again, last, what failed.
    msg.push_str(&format!("\n{}", failure_summary(test, err, ctx)));
    msg
}

/// One line: the failed subtest (if any) and the first line of its error.
fn failure_summary(test: &str, err: &str, ctx: &Context) -> String {
    let first = err.lines().find(|l| !l.trim().is_empty()).unwrap_or(err);
    let first: String = first.chars().take(400).collect();
    let failed = ctx
        .results()
        .subtests
        .iter()
        .rev()
        .find(|s| !s.passed)
        .map(|s| s.name.clone());
    match failed {
        Some(name) => format!("vm-test {test} FAILED in subtest \"{name}\": {first}"),
        None => format!("vm-test {test} FAILED: {first}"),
    }
}

fn prepare_out_dir(out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    // Serial logs are appended across a machine's boots; start each test fresh.
    let entries =
        std::fs::read_dir(out).map_err(|e| format!("cannot read {}: {e}", out.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // A stale manifest would tell a test run with --image what another build declared.
        let stale = [".serial.log", ".qemu.log", ".manifest.json", ".config.json"];
        if stale.iter().any(|s| name.ends_with(s)) || name == "results.json" {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

fn choose_accel(choice: AccelChoice, images: &[ImageDir], scratch: &Path) -> Accel {
    match (choice, images.first()) {
        (AccelChoice::Kvm, _) => Accel::Kvm,
        (AccelChoice::Tcg, _) | (AccelChoice::Auto, None) => Accel::Tcg,
        (AccelChoice::Auto, Some(img)) => qemu::probe_accel(&img.kernel, scratch),
    }
}

fn make_machines(
    spec: &TestSpec,
    images: &[ImageDir],
    boots: &[BootMode],
    accel: Accel,
    run_dir: &Path,
    out_dir: &Path,
    mut network: Option<&mut net::Network>,
) -> Result<Vec<Handle<Machine>>, String> {
    let mut out = Vec::new();
    let machines = spec.machines.iter().zip(images).zip(boots);
    for (i, ((m, image), boot)) in machines.enumerate() {
        let net = match network.as_deref_mut() {
            Some(n) => Some((n.ns.clone(), n.add_tap()?)),
            None => None,
        };
        let cfg = VmConfig {
            name: m.name.clone(),
            image: image.clone(),
            boot: *boot,
            memory_mib: m.memory_mib,
            cpus: m.cpus,
            accel,
            run_dir: run_dir.to_path_buf(),
            serial_log: absolute(&out_dir.join(format!("{}.serial.log", m.name))),
            qemu_log: absolute(&out_dir.join(format!("{}.qemu.log", m.name))),
            net,
            // Locally administered, unique per machine of this test.
            mac: format!("52:54:00:12:34:{:02x}", 0x10 + i),
        };
        let mut machine = Machine::new(
            &m.name,
            Backend::Qemu(Box::new(cfg)),
            Duration::from_secs(m.boot_timeout_secs),
        );
        machine.ipv4 = m.ipv4.map(|n| n.addr().to_string());
        machine.ipv6 = m.ipv6.map(|n| n.addr().to_string());
        out.push(Handle::new(machine));
    }
    Ok(out)
}

fn make_clients(spec: &TestSpec, network: Option<&net::Network>) -> Vec<Handle<Client>> {
    let Some(net) = network else {
        return Vec::new();
    };
    spec.clients
        .iter()
        .map(|c| {
            Handle::new(Client::new(
                &c.name,
                &net.client_ns(&c.name),
                c.ipv4.map(|n| n.addr().to_string()),
                c.ipv6.map(|n| n.addr().to_string()),
            ))
        })
        .collect()
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// A VM test ran and one of its steps failed (exit code 4), as opposed to the driver failing.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("VM test failed: {0}")]
pub struct TestFailed(pub String);
