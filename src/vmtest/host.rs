//! Running host commands (client hosts, `ip`) with a timeout, in their own
//! process group so that a timeout or Ctrl-C kills the whole pipeline.
use super::interrupt;
use super::protocol::Outcome;
use std::io::{Read, Seek};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Run `argv` for at most `timeout`; exit code 124 means it was killed on timeout
/// (like coreutils `timeout`, and like the guest side). A signal (Ctrl-C) stops it too.
pub fn run(argv: &[String], timeout: Duration) -> Result<Outcome, String> {
    run_with(argv, timeout, true)
}

fn run_with(argv: &[String], timeout: Duration, interruptible: bool) -> Result<Outcome, String> {
    let (prog, args) = argv.split_first().ok_or("empty command")?;
    // Files, not pipes: output of any size, and background children cannot block us.
    let mut out = tempfile::tempfile().map_err(|e| format!("cannot create a temp file: {e}"))?;
    let mut err = tempfile::tempfile().map_err(|e| format!("cannot create a temp file: {e}"))?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(err.try_clone().map_err(|e| e.to_string())?)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {prog}: {e}"))?;
    let deadline = Instant::now() + timeout;
    let code = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status.code().unwrap_or(128);
        }
        let interrupted = interruptible && interrupt::requested();
        if interrupted || Instant::now() >= deadline {
            kill_group(child.id());
            let _ = child.wait();
            if interrupted {
                interrupt::check()?;
            }
            break 124;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Outcome {
        code,
        stdout: read_all(&mut out)?,
        stderr: read_all(&mut err)?,
    })
}

/// Run a short administrative command (ip, qemu-img); its failure is an error naming it.
/// Not cut short by Ctrl-C: cleanup after a signal runs through here.
pub fn admin(argv: &[&str]) -> Result<String, String> {
    let owned: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let out = run_with(&owned, Duration::from_secs(60), false)?;
    if out.code != 0 {
        return Err(format!(
            "`{}` failed (exit {}): {}",
            argv.join(" "),
            out.code,
            out.stderr_text().trim()
        ));
    }
    Ok(out.stdout_text())
}

pub fn kill_group(pid: u32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
    unsafe {
        libc::kill(-(pid as i32), libc::SIGKILL);
    }
}

fn read_all(f: &mut std::fs::File) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    f.rewind().map_err(|e| e.to_string())?;
    f.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(cmd: &str) -> Vec<String> {
        vec!["bash".into(), "-c".into(), cmd.into()]
    }

    #[test]
    fn output_and_code() {
        let out = run(&sh("echo hi; echo no >&2; exit 4"), Duration::from_secs(10)).unwrap();
        assert_eq!(
            (
                out.code,
                out.stdout_text().as_str(),
                out.stderr_text().as_str()
            ),
            (4, "hi\n", "no\n")
        );
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let start = Instant::now();
        let out = run(
            &sh("sleep 30 | cat; echo never"),
            Duration::from_millis(300),
        )
        .unwrap();
        assert_eq!(out.code, 124);
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(!out.stdout_text().contains("never"));
    }

    #[test]
    fn admin_failure_names_the_command() {
        let err = admin(&["bash", "-c", "echo broken >&2; exit 1"]).unwrap_err();
        assert!(err.contains("`bash -c") && err.contains("broken"), "{err}");
    }
}
