//! The backdoor's wire format (guest side: modules/test_backdoor/backdoor.sh.tera).
//!
//! One line each way. Commands and outputs travel base64-encoded so that any
//! byte (newlines, binary tar streams) survives a line-based channel.
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// First line the guest prints after opening its port: `hardroot-ready <uptime>`.
pub const READY: &str = "hardroot-ready";
/// Answer to one command: `hardroot-result <code> <b64 stdout> <b64 stderr>`.
pub const RESULT: &str = "hardroot-result";

/// What one command produced in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Outcome {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("unexpected line from the backdoor (not a result): {0:?}")]
    NotAResult(String),
    #[error("malformed result line from the backdoor ({why}): {line:?}")]
    Malformed { why: &'static str, line: String },
}

/// The line that asks the guest to run `command` for at most `timeout_secs`.
pub fn encode_command(command: &str, timeout_secs: u64) -> String {
    // `timeout 0` would mean "no limit" in the guest; a limit is always wanted.
    let limit = timeout_secs.max(1);
    format!("run {limit} {}\n", STANDARD.encode(command.as_bytes()))
}

/// The guest's uptime if `line` is the ready marker.
pub fn parse_ready(line: &str) -> Option<f64> {
    let rest = line.trim_end().strip_prefix(READY)?.strip_prefix(' ')?;
    rest.trim().parse().ok()
}

/// Decode one `hardroot-result` line.
pub fn decode_result(line: &str) -> Result<Outcome, ProtocolError> {
    let line = line.trim_end_matches(['\n', '\r']);
    let malformed = |why| ProtocolError::Malformed {
        why,
        line: shorten(line),
    };
    let mut fields = line.split(' ');
    if fields.next() != Some(RESULT) {
        return Err(ProtocolError::NotAResult(shorten(line)));
    }
    let code = fields.next().ok_or_else(|| malformed("no exit code"))?;
    let code: i32 = code
        .parse()
        .map_err(|_| malformed("exit code is not a number"))?;
    let stdout = fields.next().ok_or_else(|| malformed("no stdout field"))?;
    let stderr = fields.next().ok_or_else(|| malformed("no stderr field"))?;
    if fields.next().is_some() {
        return Err(malformed("too many fields"));
    }
    let stdout = STANDARD
        .decode(stdout)
        .map_err(|_| malformed("stdout is not base64"))?;
    let stderr = STANDARD
        .decode(stderr)
        .map_err(|_| malformed("stderr is not base64"))?;
    Ok(Outcome {
        code,
        stdout,
        stderr,
    })
}

/// Encode an outcome the way the guest does (used by tests and fake guests).
pub fn encode_result(outcome: &Outcome) -> String {
    format!(
        "{RESULT} {} {} {}\n",
        outcome.code,
        STANDARD.encode(&outcome.stdout),
        STANDARD.encode(&outcome.stderr)
    )
}

fn shorten(line: &str) -> String {
    match line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_is_one_line_with_limit_and_base64() {
        let line = encode_command("echo 'a\nb'", 30);
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.ends_with('\n'));
        let mut parts = line.trim_end().split(' ');
        assert_eq!(parts.next(), Some("run"));
        assert_eq!(parts.next(), Some("30"));
        let decoded = STANDARD.decode(parts.next().unwrap()).unwrap();
        assert_eq!(decoded, b"echo 'a\nb'");
    }

    #[test]
    fn zero_timeout_becomes_one_second() {
        assert!(encode_command("true", 0).starts_with("run 1 "));
    }

    #[test]
    fn result_round_trips_binary_and_empty_output() {
        let outcome = Outcome {
            code: 3,
            stdout: vec![0, 10, 255, b' '],
            stderr: vec![],
        };
        let line = encode_result(&outcome);
        assert_eq!(decode_result(&line), Ok(outcome));
    }

    #[test]
    fn result_from_guest_with_empty_fields() {
        // What the guest's printf writes when a command printed nothing.
        let out = decode_result("hardroot-result 0  \n").unwrap();
        assert_eq!(
            out,
            Outcome {
                code: 0,
                stdout: vec![],
                stderr: vec![]
            }
        );
    }

    #[test]
    fn bad_lines_are_errors_not_panics() {
        assert!(matches!(
            decode_result("hello"),
            Err(ProtocolError::NotAResult(_))
        ));
        assert!(matches!(
            decode_result("hardroot-result x a b"),
            Err(ProtocolError::Malformed { .. })
        ));
        assert!(matches!(
            decode_result("hardroot-result 0 !!! ="),
            Err(ProtocolError::Malformed { .. })
        ));
        assert!(matches!(
            decode_result("hardroot-result 0"),
            Err(ProtocolError::Malformed { .. })
        ));
        assert!(matches!(
            decode_result("hardroot-result 0 a b c"),
            Err(ProtocolError::Malformed { .. })
        ));
    }

    #[test]
    fn ready_marker_carries_uptime() {
        assert_eq!(parse_ready("hardroot-ready 18.67\n"), Some(18.67));
        assert_eq!(parse_ready("hardroot-readyx 1"), None);
        assert_eq!(parse_ready("hardroot-result 0  "), None);
    }
}
