//! Section 3: the VM test's subtests and steps (results.json), and on failure
//! the tail of every machine's serial console.
use super::identity::text;
use super::inputs::Inputs;
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

const SERIAL_TAIL: usize = 60;

#[derive(Serialize)]
pub struct Tests {
    /// "passed", "failed" or "unfinished" (results.json written mid-run).
    pub outcome: String,
    pub error: Option<String>,
    pub duration_s: f64,
    pub subtests: Vec<Subtest>,
    pub steps: Vec<Step>,
    pub machines: Vec<Machine>,
    pub failed_steps: usize,
    /// test.toml's `[parameters]` as this run set them (results.json `parameters`).
    pub parameters: Vec<Parameter>,
}

#[derive(Serialize)]
pub struct Parameter {
    pub name: String,
    /// As in test.toml: strings quoted.
    pub value: String,
    /// The default, when `--param` changed it.
    pub default: Option<String>,
    pub description: String,
}

#[derive(Serialize)]
pub struct Subtest {
    pub name: String,
    pub passed: bool,
    pub duration_s: f64,
    pub error: Option<String>,
}

#[derive(Serialize)]
pub struct Step {
    pub subtest: String,
    pub target: String,
    pub action: String,
    pub detail: String,
    pub ok: bool,
    pub duration_s: f64,
    pub error: Option<String>,
}

#[derive(Serialize)]
pub struct Machine {
    pub name: String,
    pub boots: String,
    pub serial_file: String,
    /// Only kept when the test did not pass: a passing run needs no console.
    pub serial_tail: Option<String>,
}

pub fn collect(inputs: &Inputs) -> Tests {
    let r = &inputs.results;
    let outcome = match r.get("passed").and_then(Value::as_bool) {
        Some(true) => "passed",
        Some(false) => "failed",
        None => "unfinished",
    };
    let steps: Vec<Step> = array(r, "steps").iter().map(step).collect();
    Tests {
        outcome: outcome.into(),
        error: r.get("error").and_then(Value::as_str).map(clean),
        duration_s: r.get("duration_s").and_then(Value::as_f64).unwrap_or(0.0),
        subtests: array(r, "subtests").iter().map(subtest).collect(),
        failed_steps: steps.iter().filter(|s| !s.ok).count(),
        steps,
        machines: machines(r, &inputs.run, outcome != "passed"),
        parameters: array(r, "parameters").iter().map(parameter).collect(),
    }
}

fn parameter(v: &Value) -> Parameter {
    let json = |k: &str| v.get(k).map(Value::to_string).unwrap_or_default();
    let (value, default) = (json("value"), json("default"));
    Parameter {
        name: v.get("name").map(text).unwrap_or_default(),
        default: (default != value).then_some(default),
        value,
        description: v
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    }
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn subtest(v: &Value) -> Subtest {
    Subtest {
        name: v.get("name").map(text).unwrap_or_default(),
        passed: v.get("passed").and_then(Value::as_bool).unwrap_or(false),
        duration_s: v.get("duration_s").and_then(Value::as_f64).unwrap_or(0.0),
        error: v.get("error").and_then(Value::as_str).map(clean),
    }
}

fn step(v: &Value) -> Step {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Step {
        subtest: s("subtest"),
        target: s("target"),
        action: s("action"),
        detail: clean(&s("detail")),
        ok: v.get("ok").and_then(Value::as_bool).unwrap_or(false),
        duration_s: v.get("duration_s").and_then(Value::as_f64).unwrap_or(0.0),
        error: v.get("error").and_then(Value::as_str).map(clean),
    }
}

fn machines(r: &Value, run: &Path, with_tail: bool) -> Vec<Machine> {
    let Some(map) = r.get("machines").and_then(Value::as_object) else {
        return Vec::new();
    };
    map.iter()
        .map(|(name, info)| {
            let log = serial_log(run, name, info);
            let kernel = array(info, "kernel_uptime_at_ready_s");
            let boots = array(info, "boot_to_ready_s")
                .iter()
                .enumerate()
                .filter_map(|(i, s)| Some((s.as_f64()?, kernel.get(i).and_then(Value::as_f64))))
                .map(|(s, k)| match k {
                    // The rest is QEMU, firmware and bootloader.
                    Some(k) => format!("{s:.1} s (kernel {k:.1} s)"),
                    None => format!("{s:.1} s"),
                })
                .collect::<Vec<_>>()
                .join(", ");
            Machine {
                name: name.clone(),
                boots: if boots.is_empty() {
                    "—".into()
                } else {
                    boots
                },
                serial_file: log
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "—".into()),
                serial_tail: if with_tail {
                    log.and_then(|p| read_end(&p))
                        .map(|t| tail(&t, SERIAL_TAIL))
                } else {
                    None
                },
            }
        })
        .collect()
}

/// The serial log: the recorded path if it still exists, else NAME.serial.log
/// in the run folder (a copied run keeps the file, not the path).
fn serial_log(run: &Path, name: &str, info: &Value) -> Option<PathBuf> {
    let recorded = info
        .get("serial_log")
        .and_then(Value::as_str)
        .map(PathBuf::from);
    let local = run.join(format!("{name}.serial.log"));
    if local.is_file() {
        return Some(local);
    }
    recorded.filter(|p| p.is_file())
}

/// The last part of a file: serial logs of long tests grow to many MB, and
/// only their end is shown.
fn read_end(path: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    const END: u64 = 256 << 10;
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(END))).ok()?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    clean(&all[start..].join("\n"))
}

/// Terminal escapes and control characters out: serial consoles are full of
/// them, and the page shows text.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => skip_escape(&mut chars),
            '\n' | '\t' => out.push(c),
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// CSI sequences (ESC [ ... final byte in @..~) and two-byte escapes.
fn skip_escape(chars: &mut std::iter::Peekable<std::str::Chars>) {
    if chars.peek() != Some(&'[') {
        chars.next();
        return;
    }
    chars.next();
    for c in chars.by_ref() {
        if ('@'..='~').contains(&c) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_strips_escapes_and_controls() {
        let s = "\u{1b}[0;32m  OK  \u{1b}[0m] Started x.\r\n\u{7}bell";
        assert_eq!(clean(s), "  OK  ] Started x.\nbell");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\nd", 2), "c\nd");
        assert_eq!(tail("a", 5), "a");
    }
}
