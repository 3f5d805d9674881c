//! The things a test script drives: VMs (`Machine`) and client hosts (`Client`),
//! and the verbs both share (succeed, fail, wait_until_succeeds, ...).
use super::host;
use super::interrupt;
use super::layout::{self, Layout};
use super::protocol::Outcome;
use super::qemu::{Backend, BootMode, Guest, strip_ansi, tail_file};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Limit for one command when the script gives none.
pub const DEFAULT_COMMAND_SECS: u64 = 300;
/// How long a machine may take to power off or to go down for a reboot.
const POWER_OFF_SECS: u64 = 120;

/// Something that runs shell commands: a VM through its backdoor, or a client
/// host through `ip netns exec`.
pub trait Runner {
    fn label(&self) -> String;
    fn execute(&mut self, command: &str, limit_secs: u64) -> Result<Outcome, String>;
}

pub struct Machine {
    pub name: String,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    backend: Backend,
    boot_timeout: Duration,
    guest: Option<Guest>,
    disk_made: bool,
    /// Seconds from process start to the backdoor's ready marker, one per boot.
    pub boot_secs: Vec<f64>,
    /// The guest kernel's uptime at that marker, one per boot: the rest of
    /// boot_secs is QEMU, firmware and bootloader.
    pub kernel_secs: Vec<f64>,
    serial_log: Option<PathBuf>,
    /// Where the current boot starts in the serial log (it is appended across boots).
    boot_offset: u64,
}

impl Machine {
    pub fn new(name: &str, backend: Backend, boot_timeout: Duration) -> Machine {
        let serial_log = match &backend {
            Backend::Qemu(cfg) => Some(cfg.serial_log.clone()),
            Backend::Local { .. } => None,
        };
        Machine {
            name: name.to_string(),
            ipv4: None,
            ipv6: None,
            backend,
            boot_timeout,
            guest: None,
            disk_made: false,
            boot_secs: Vec::new(),
            kernel_secs: Vec::new(),
            serial_log,
            boot_offset: 0,
        }
    }

    pub fn is_up(&self) -> bool {
        self.guest.is_some()
    }

    /// Start the machine's process without waiting for it to boot (start_all boots in parallel).
    pub fn launch(&mut self) -> Result<(), String> {
        if self.guest.is_some() {
            return Ok(());
        }
        self.make_disk()?;
        self.boot_offset = self
            .serial_log
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        self.guest = Some(Guest::start(&self.backend).map_err(|e| format!("{}: {e}", self.name))?);
        Ok(())
    }

    /// Wait for the backdoor of a launched machine.
    pub fn await_ready(&mut self) -> Result<f64, String> {
        let timeout = self.boot_timeout;
        let Some(guest) = self.guest.as_mut() else {
            return Err(format!("{} was not started", self.name));
        };
        match guest.wait_ready(timeout) {
            Ok(uptime) => {
                let secs = guest.started.elapsed().as_secs_f64();
                self.boot_secs.push(secs);
                self.kernel_secs.push(uptime);
                Ok(secs)
            }
            Err(e) => {
                self.crash();
                Err(format!(
                    "{} did not boot to its backdoor within {}s: {e}",
                    self.name,
                    timeout.as_secs()
                ))
            }
        }
    }

    pub fn start(&mut self) -> Result<f64, String> {
        if self.guest.is_some() {
            return Ok(0.0);
        }
        self.launch()?;
        self.await_ready()
    }

    /// Power off from inside (clean shutdown) and wait for the process to end.
    pub fn shutdown(&mut self) -> Result<(), String> {
        self.power_down("systemctl poweroff", "power off")
    }

    /// Reboot onto the same disk. QEMU runs with -no-reboot, so the guest's reboot
    /// ends the process and a new one boots: a cold start is ~3x faster than a warm
    /// reboot under TCG, and the disk (all state) is the same file.
    pub fn reboot(&mut self) -> Result<f64, String> {
        self.power_down("systemctl reboot", "reboot")?;
        self.start()
    }

    /// Stop at once, like pulling the plug (QMP quit, then SIGKILL).
    pub fn crash(&mut self) {
        if let Some(mut g) = self.guest.take() {
            g.hard_stop();
        }
    }

    pub fn serial_tail(&self, lines: usize) -> String {
        self.serial_log
            .as_ref()
            .map(|p| tail_file(p, lines))
            .unwrap_or_default()
    }

    /// Wait until the serial console of the current boot matches `pattern`.
    pub fn wait_for_console_text(
        &mut self,
        pattern: &str,
        timeout_secs: u64,
    ) -> Result<String, String> {
        let re = regex::Regex::new(pattern)
            .map_err(|e| format!("bad console pattern {pattern:?}: {e}"))?;
        let Some(log) = self.serial_log.clone() else {
            return Err(format!("{} has no serial console", self.name));
        };
        if self.guest.is_none() {
            self.launch()?;
        }
        let deadline = Instant::now() + Duration::from_secs(timeout_secs);
        loop {
            let bytes = std::fs::read(&log).unwrap_or_default();
            let start = usize::try_from(self.boot_offset)
                .unwrap_or(0)
                .min(bytes.len());
            // Without systemd's colour codes, "Reached target.*Multi-User" matches as it reads.
            let text = strip_ansi(&String::from_utf8_lossy(&bytes[start..]));
            if let Some(m) = re.find(&text) {
                return Ok(m.as_str().to_string());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{}: the serial console did not show /{pattern}/ within {timeout_secs}s",
                    self.name
                ));
            }
            interrupt::check()?;
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn serial_log(&self) -> Option<&PathBuf> {
        self.serial_log.as_ref()
    }

    /// The booted disk's partitions and mounts against image-manifest.json's
    /// (vmtest::layout), written to OUT/<name>.layout.json for the report.
    /// Fails naming every difference. A direct-kernel boot has no shipped
    /// layout: the file says so and nothing fails.
    pub fn check_layout(&mut self, out_dir: &std::path::Path) -> Result<Layout, String> {
        let layout = match &self.backend {
            Backend::Qemu(cfg) if cfg.boot == BootMode::UefiDisk => {
                let disk = image_manifest_disk(&cfg.image.manifest)?;
                let findmnt = json_of(&succeed(self, layout::FINDMNT, 60)?, "findmnt")?;
                let lsblk = json_of(&succeed(self, layout::LSBLK, 60)?, "lsblk")?;
                layout::compare(&disk, &findmnt, &lsblk)
            }
            _ => Layout {
                skipped: "booted rootfs.img with a direct kernel, not the shipped disk.img".into(),
                ..Layout::default()
            },
        };
        let path = out_dir.join(format!("{}.layout.json", self.name));
        let text = serde_json::to_string_pretty(&layout).unwrap_or_default();
        std::fs::write(&path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let diffs = layout.differences();
        if diffs.is_empty() {
            Ok(layout)
        } else {
            Err(format!(
                "the booted disk differs from its declared layout:\n  {}",
                diffs.join("\n  ")
            ))
        }
    }

    fn power_down(&mut self, command: &str, what: &str) -> Result<(), String> {
        let Some(mut guest) = self.guest.take() else {
            return Ok(());
        };
        if matches!(self.backend, Backend::Local { .. }) {
            guest.hard_stop();
            return Ok(());
        }
        guest
            .send_only(command)
            .map_err(|e| format!("{}: cannot ask for {what}: {e}", self.name))?;
        match guest.wait_exit(Duration::from_secs(POWER_OFF_SECS)) {
            Ok(_) => Ok(()),
            Err(e) => {
                guest.hard_stop();
                Err(format!("{}: {what}: {e}", self.name))
            }
        }
    }

    /// The copy-on-write disk over the image: the image stays pristine, the
    /// machine's state survives its reboots.
    fn make_disk(&mut self) -> Result<(), String> {
        let Backend::Qemu(cfg) = &self.backend else {
            return Ok(());
        };
        if self.disk_made {
            return Ok(());
        }
        super::qemu::copy_on_write(&cfg.image, cfg.boot, &cfg.disk())?;
        self.disk_made = true;
        Ok(())
    }
}

impl Runner for Machine {
    fn label(&self) -> String {
        self.name.clone()
    }

    fn execute(&mut self, command: &str, limit_secs: u64) -> Result<Outcome, String> {
        // Like the NixOS driver: the first command boots a machine that is not up.
        if self.guest.is_none() {
            self.start()?;
        }
        let name = self.name.clone();
        let guest = self
            .guest
            .as_mut()
            .ok_or_else(|| format!("{name} is not running"))?;
        guest
            .run(command, limit_secs)
            .map_err(|e| format!("{name}: {e}"))
    }
}

/// A client host: a network namespace of its own on the test bridge.
pub struct Client {
    pub name: String,
    pub ns: String,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    /// Servers started with `spawn` (e.g. an ACME server on a client host); killed at the end.
    pub spawned: Vec<std::process::Child>,
}

impl Client {
    pub fn new(name: &str, ns: &str, ipv4: Option<String>, ipv6: Option<String>) -> Client {
        Client {
            name: name.into(),
            ns: ns.into(),
            ipv4,
            ipv6,
            spawned: Vec::new(),
        }
    }

    /// Start a long-running host command in this client's namespace and return
    /// at once; its output goes to `log`. It is killed when the test ends.
    pub fn spawn(&mut self, command: &str, log: &std::path::Path) -> Result<(), String> {
        use std::os::unix::process::CommandExt;
        let file = std::fs::File::create(log)
            .map_err(|e| format!("cannot write {}: {e}", log.display()))?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns, "bash", "-c", command])
            .stdin(std::process::Stdio::null())
            .stdout(file)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("{}: cannot start {command}: {e}", self.name))?;
        self.spawned.push(child);
        Ok(())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        for child in &mut self.spawned {
            host::kill_group(child.id());
            let _ = child.wait();
        }
    }
}

impl Runner for Client {
    fn label(&self) -> String {
        self.name.clone()
    }

    fn execute(&mut self, command: &str, limit_secs: u64) -> Result<Outcome, String> {
        let argv: Vec<String> = ["ip", "netns", "exec", &self.ns, "bash", "-c", command]
            .iter()
            .map(|s| s.to_string())
            .collect();
        host::run(&argv, Duration::from_secs(limit_secs.max(1)))
            .map_err(|e| format!("{}: {e}", self.name))
    }
}

/// Run and require exit code 0; returns stdout.
pub fn succeed(r: &mut dyn Runner, command: &str, limit_secs: u64) -> Result<String, String> {
    let out = r.execute(command, limit_secs)?;
    if out.code != 0 {
        return Err(failure(&r.label(), command, &out, "failed"));
    }
    Ok(out.stdout_text())
}

/// Run and require a non-zero exit code; returns stdout.
pub fn fail(r: &mut dyn Runner, command: &str, limit_secs: u64) -> Result<String, String> {
    let out = r.execute(command, limit_secs)?;
    if out.code == 0 {
        return Err(failure(
            &r.label(),
            command,
            &out,
            "succeeded but was expected to fail",
        ));
    }
    Ok(out.stdout_text())
}

/// Retry once a second until the command's success equals `want_success`.
pub fn wait_until(
    r: &mut dyn Runner,
    command: &str,
    timeout_secs: u64,
    want_success: bool,
) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    loop {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_secs()
            .max(1);
        let out = r.execute(command, left.min(DEFAULT_COMMAND_SECS))?;
        if (out.code == 0) == want_success {
            return Ok(out.stdout_text());
        }
        if Instant::now() >= deadline {
            let want = if want_success { "succeed" } else { "fail" };
            let what = format!("did not {want} within {timeout_secs}s; last attempt");
            return Err(failure(&r.label(), command, &out, &what));
        }
        interrupt::check()?;
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Wait until a systemd unit is active; fail at once when it failed or cannot start.
pub fn wait_for_unit(m: &mut Machine, unit: &str, timeout_secs: u64) -> Result<(), String> {
    let quoted = shell_quote(unit);
    // Jobs are counted BEFORE the state is read: a unit seen inactive after
    // "no jobs pending" really has nothing coming (read the other way round, a
    // job finishing in between looks like a unit that will never start).
    let query = format!(
        "echo Jobs=$(systemctl list-jobs --no-legend | wc -l); \
         systemctl show --property=LoadState,ActiveState,SubState {quoted}"
    );
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    loop {
        let state = succeed(m, &query, 60)?;
        let get = |k: &str| {
            state
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or("")
                .trim()
                .to_string()
        };
        let (load, active) = (get("LoadState"), get("ActiveState"));
        if active == "active" {
            return Ok(());
        }
        let stuck = unit_is_stuck(&load, &active, &get("Jobs"));
        if stuck || Instant::now() >= deadline {
            let why = if stuck {
                "cannot become active".to_string()
            } else {
                format!("not active after {timeout_secs}s")
            };
            let status = unit_status(m, &quoted);
            return Err(format!(
                "{}: unit {unit} {why} (LoadState={load}, ActiveState={active}, SubState={})\n{status}",
                m.name,
                get("SubState")
            ));
        }
        interrupt::check()?;
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Failed, unknown, or inactive with no job queued anywhere: waiting cannot help.
fn unit_is_stuck(load: &str, active: &str, jobs: &str) -> bool {
    active == "failed" || load == "not-found" || (active == "inactive" && jobs == "0")
}

/// Wait until something listens on TCP `port` in the guest (any address).
pub fn wait_for_open_port(m: &mut Machine, port: u16, timeout_secs: u64) -> Result<(), String> {
    let cmd = format!("ss -Htln 'sport = :{port}' | grep -q .");
    wait_until(m, &cmd, timeout_secs, true)
        .map(|_| ())
        .map_err(|e| format!("waiting for TCP port {port} to listen: {e}"))
}

fn unit_status(m: &mut Machine, quoted: &str) -> String {
    let cmd = format!(
        "systemctl status --no-pager --lines=0 {quoted}; journalctl --no-pager -n 20 -u {quoted}"
    );
    m.execute(&cmd, 60)
        .map(|o| o.stdout_text())
        .unwrap_or_default()
}

pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// An error message that shows what ran, where, and everything it printed.
pub fn failure(who: &str, command: &str, out: &Outcome, what: &str) -> String {
    let mut msg = format!("{who}: command {what} (exit code {}): {command}", out.code);
    if out.code == 124 {
        msg.push_str("\n(exit code 124: killed by its time limit)");
    }
    for (label, text) in [("stdout", out.stdout_text()), ("stderr", out.stderr_text())] {
        if !text.trim().is_empty() {
            msg.push_str(&format!(
                "\n--- {label} ---\n{}",
                last_chars(text.trim_end(), 4000)
            ));
        }
    }
    msg
}

fn last_chars(s: &str, n: usize) -> &str {
    match s.char_indices().rev().nth(n) {
        Some((i, _)) => &s[i..],
        None => s,
    }
}

fn image_manifest_disk(path: &std::path::Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    match v.get("disk") {
        Some(d) if d.is_object() => Ok(d.clone()),
        _ => Err(format!("{} records no disk", path.display())),
    }
}

fn json_of(text: &str, what: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("cannot read {what}'s JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_units() {
        assert!(unit_is_stuck("loaded", "failed", "3"));
        assert!(unit_is_stuck("not-found", "inactive", "3"));
        assert!(unit_is_stuck("loaded", "inactive", "0"));
        assert!(!unit_is_stuck("loaded", "inactive", "2"));
        assert!(!unit_is_stuck("loaded", "activating", "0"));
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn failure_names_command_code_and_output() {
        let out = Outcome {
            code: 2,
            stdout: b"some out\n".to_vec(),
            stderr: b"boom\n".to_vec(),
        };
        let msg = failure("server", "ls /nope", &out, "failed");
        assert!(msg.contains("server: command failed (exit code 2): ls /nope"));
        assert!(msg.contains("--- stdout ---\nsome out"));
        assert!(msg.contains("--- stderr ---\nboom"));
    }
}
