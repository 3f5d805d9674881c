//! Host end of the backdoor: a unix socket QEMU connects to, read line by line
//! with deadlines, so that no wait can hang forever.
use super::interrupt;
use super::protocol::{self, Outcome};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// How often a blocked read wakes up to check that QEMU still runs and no signal came.
const POLL: Duration = Duration::from_millis(200);

pub struct Channel {
    stream: UnixStream,
    pending: Vec<u8>,
}

/// Called between polls; returns an error when the other side is known dead
/// (e.g. "QEMU exited with status 1").
pub type Alive<'a> = &'a mut dyn FnMut() -> Result<(), String>;

impl Channel {
    pub fn new(stream: UnixStream) -> Self {
        Channel {
            stream,
            pending: Vec::new(),
        }
    }

    /// Wait for the guest's ready marker; returns the guest's uptime then.
    pub fn wait_ready(&mut self, deadline: Instant, alive: Alive) -> Result<f64, String> {
        loop {
            let line = self.read_line(deadline, alive, "the backdoor's ready marker")?;
            if let Some(uptime) = protocol::parse_ready(&line) {
                return Ok(uptime);
            }
        }
    }

    /// Run one command in the guest. The guest kills it after `limit_secs`;
    /// the host waits a little longer than that for the answer.
    pub fn run(&mut self, command: &str, limit_secs: u64, alive: Alive) -> Result<Outcome, String> {
        let line = protocol::encode_command(command, limit_secs);
        self.stream
            .write_all(line.as_bytes())
            .map_err(|e| format!("cannot send the command to the guest: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(limit_secs.max(1) + 15);
        let what = "the command's result";
        let answer = self.read_line(deadline, alive, what)?;
        if protocol::parse_ready(&answer).is_some() {
            return Err(
                "the guest's backdoor restarted while the command ran (did the command kill it?)"
                    .into(),
            );
        }
        protocol::decode_result(&answer).map_err(|e| e.to_string())
    }

    /// Send a command and do not wait for its answer (poweroff, reboot).
    pub fn send_only(&mut self, command: &str) -> Result<(), String> {
        let line = protocol::encode_command(command, 60);
        self.stream
            .write_all(line.as_bytes())
            .map_err(|e| format!("cannot send the command to the guest: {e}"))
    }

    fn read_line(&mut self, deadline: Instant, alive: Alive, what: &str) -> Result<String, String> {
        loop {
            if let Some(line) = self.take_line() {
                return Ok(line);
            }
            interrupt::check()?;
            alive().map_err(|e| format!("while waiting for {what}: {e}"))?;
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("timed out waiting for {what}"));
            }
            self.fill((deadline - now).min(POLL), what)?;
        }
    }

    fn take_line(&mut self) -> Option<String> {
        let end = self.pending.iter().position(|&b| b == b'\n')?;
        let line: Vec<u8> = self.pending.drain(..=end).collect();
        Some(String::from_utf8_lossy(&line).into_owned())
    }

    fn fill(&mut self, wait: Duration, what: &str) -> Result<(), String> {
        self.stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(format!(
                "the guest closed the channel while we waited for {what} (QEMU exited?)"
            )),
            Ok(n) => {
                self.pending.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(format!(
                "reading from the guest failed while waiting for {what}: {e}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    fn ok() -> impl FnMut() -> Result<(), String> {
        || Ok(())
    }

    #[test]
    fn ready_then_result_over_a_socket_pair() {
        let (host, guest) = UnixStream::pair().unwrap();
        let fake = std::thread::spawn(move || {
            let mut w = guest.try_clone().unwrap();
            w.write_all(b"noise before\nhardroot-ready 3.5\n").unwrap();
            let mut r = std::io::BufReader::new(guest);
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(line.starts_with("run 7 "));
            let out = Outcome {
                code: 2,
                stdout: b"out".to_vec(),
                stderr: b"err".to_vec(),
            };
            w.write_all(protocol::encode_result(&out).as_bytes())
                .unwrap();
        });
        let mut ch = Channel::new(host);
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(ch.wait_ready(deadline, &mut ok()), Ok(3.5));
        let out = ch.run("false", 7, &mut ok()).unwrap();
        assert_eq!(out.code, 2);
        assert_eq!(out.stdout_text(), "out");
        fake.join().unwrap();
    }

    #[test]
    fn waiting_times_out_with_a_message_naming_what_was_awaited() {
        let (host, _guest) = UnixStream::pair().unwrap();
        let mut ch = Channel::new(host);
        let err = ch
            .wait_ready(Instant::now() + Duration::from_millis(300), &mut ok())
            .unwrap_err();
        assert!(
            err.contains("timed out waiting for the backdoor's ready marker"),
            "{err}"
        );
    }

    #[test]
    fn a_dead_peer_is_reported() {
        let (host, guest) = UnixStream::pair().unwrap();
        drop(guest);
        let mut ch = Channel::new(host);
        let err = ch
            .wait_ready(Instant::now() + Duration::from_secs(5), &mut ok())
            .unwrap_err();
        assert!(err.contains("closed the channel"), "{err}");
        let mut dead = || Err("QEMU exited with status 1".to_string());
        let (host, _guest) = UnixStream::pair().unwrap();
        let mut ch = Channel::new(host);
        let err = ch
            .wait_ready(Instant::now() + Duration::from_secs(5), &mut dead)
            .unwrap_err();
        assert!(err.contains("QEMU exited with status 1"), "{err}");
    }
}
