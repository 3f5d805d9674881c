//! Section "Load and faults": what the acceptance test measured under load
//! and how the machine came back from the faults it injected
//! (OUT/load-faults.json, written by the script with `write_json`), next to
//! the restart policy the build declares (config.json's `supervision.units`).
//! The verdicts are the test's own (`ok`); the page only shows them.
use super::identity::dash;
use super::inputs::Inputs;
use super::page::Cell;
use serde::{Deserialize, Serialize};

/// Where the acceptance test writes its record (`write_json(FILE, ...)`).
pub const FILE: &str = "load-faults.json";

/// What the error names when the file is not this shape.
pub const SHAPE: &str = "the load and faults record: {\"load\": {\"clients\": …, \"sent\": …, …}, \"faults\": [{\"name\": …, \"ok\": true|false, …}]} (docs/testing.md, \"What the report reads\")";

/// OUT/load-faults.json. Unknown fields are ignored, missing ones shown as "—".
#[derive(Deserialize, Debug, Default)]
pub struct LoadFaults {
    #[serde(default)]
    pub load: Option<Load>,
    #[serde(default)]
    pub faults: Vec<Fault>,
}

/// Numbers are f64: a script may compute a count as a FLOAT.
#[derive(Deserialize, Debug, Default)]
pub struct Load {
    pub clients: Option<f64>,
    pub messages_per_client: Option<f64>,
    pub logins_ok: Option<f64>,
    pub login_seconds: Option<f64>,
    pub logins_per_second: Option<f64>,
    pub sent: Option<f64>,
    pub delivered: Option<f64>,
    pub duplicates: Option<f64>,
    pub missing: Option<f64>,
    pub latency_ms: Option<Latency>,
    pub guest: Option<Guest>,
    /// CrowdSec decisions against the load client's address.
    pub crowdsec_decisions: Option<f64>,
    pub ok: Option<bool>,
}

#[derive(Deserialize, Debug, Default)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Deserialize, Debug, Default)]
pub struct Guest {
    pub cpu_percent: Option<f64>,
    pub memory_used_mb: Option<f64>,
    pub memory_total_mb: Option<f64>,
}

#[derive(Deserialize, Debug)]
pub struct Fault {
    pub name: String,
    pub kind: Option<String>,
    pub unit: Option<String>,
    pub ok: bool,
    /// Until the service answered again; null when that is not the measure.
    pub seconds: Option<f64>,
    pub detail: Option<String>,
}

/// One entry of config.json's `supervision.units`.
#[derive(Deserialize, Debug)]
struct Policy {
    unit: String,
    restart: Option<String>,
    restart_sec: Option<f64>,
    start_limit_burst: Option<f64>,
    start_limit_interval_sec: Option<f64>,
    why: Option<String>,
}

#[derive(Serialize)]
pub struct Section {
    /// False: the run has no load-faults.json (or it could not be read: `error`).
    pub ran: bool,
    pub error: Option<String>,
    pub policies: Vec<PolicyRow>,
    /// Why there is no restart policy table (an older build, an unreadable option).
    pub policy_note: Option<String>,
    pub figures: Vec<Figure>,
    pub load_verdict: Option<Cell>,
    pub faults: Vec<FaultRow>,
    /// The load (when it has a verdict) and every fault: how many passed of how many.
    pub passed: usize,
    pub checks: usize,
}

#[derive(Serialize)]
pub struct PolicyRow {
    pub unit: String,
    pub restart: String,
    pub restart_sec: String,
    pub start_limit: String,
    pub why: String,
}

#[derive(Serialize)]
pub struct Figure {
    pub what: &'static str,
    pub value: String,
}

#[derive(Serialize)]
pub struct FaultRow {
    pub name: String,
    pub kind: String,
    pub unit: String,
    pub result: Cell,
    pub seconds: String,
    pub detail: String,
}

pub fn collect(inputs: &Inputs) -> Section {
    let (policies, policy_note) = policies(inputs);
    let mut s = Section {
        ran: false,
        error: None,
        policies,
        policy_note,
        figures: Vec::new(),
        load_verdict: None,
        faults: Vec::new(),
        passed: 0,
        checks: 0,
    };
    let record = match &inputs.load_faults {
        Ok(Some(r)) => r,
        Ok(None) => return s,
        Err(e) => {
            s.error = Some(e.clone());
            return s;
        }
    };
    s.ran = true;
    if let Some(load) = &record.load {
        s.figures = figures(load);
        s.load_verdict = load.ok.map(verdict);
    }
    s.faults = record.faults.iter().map(fault_row).collect();
    let oks: Vec<bool> = record
        .load
        .as_ref()
        .and_then(|l| l.ok)
        .into_iter()
        .chain(record.faults.iter().map(|f| f.ok))
        .collect();
    s.checks = oks.len();
    s.passed = oks.iter().filter(|ok| **ok).count();
    s
}

fn verdict(ok: bool) -> Cell {
    Cell::judge(if ok { "pass" } else { "fail" }, ok)
}

fn figures(l: &Load) -> Vec<Figure> {
    let lat = l.latency_ms.as_ref();
    let guest = l.guest.as_ref();
    let rows = [
        (
            "clients × messages per client",
            format!("{} × {}", num(l.clients), num(l.messages_per_client)),
        ),
        (
            "logins that succeeded",
            format!("{} of {}", num(l.logins_ok), num(l.clients)),
        ),
        (
            "time to log every client in",
            format!(
                "{} s ({} logins/s)",
                num(l.login_seconds),
                num(l.logins_per_second)
            ),
        ),
        (
            "messages delivered / sent",
            format!("{} / {}", num(l.delivered), num(l.sent)),
        ),
        ("duplicates", num(l.duplicates)),
        ("missing", num(l.missing)),
        (
            "latency p50 / p95 / p99",
            format!(
                "{} / {} / {} ms",
                num(lat.and_then(|x| x.p50)),
                num(lat.and_then(|x| x.p95)),
                num(lat.and_then(|x| x.p99))
            ),
        ),
        (
            "guest CPU during the load",
            format!("{} %", num(guest.and_then(|g| g.cpu_percent))),
        ),
        (
            "guest memory used / total",
            format!(
                "{} / {} MB",
                num(guest.and_then(|g| g.memory_used_mb)),
                num(guest.and_then(|g| g.memory_total_mb))
            ),
        ),
        (
            "CrowdSec decisions against the load client",
            num(l.crowdsec_decisions),
        ),
    ];
    rows.into_iter()
        .map(|(what, value)| Figure { what, value })
        .collect()
}

fn fault_row(f: &Fault) -> FaultRow {
    let or_dash = |s: &Option<String>| s.clone().unwrap_or_else(dash);
    FaultRow {
        name: f.name.clone(),
        kind: or_dash(&f.kind),
        unit: or_dash(&f.unit),
        result: verdict(f.ok),
        seconds: num(f.seconds),
        detail: or_dash(&f.detail),
    }
}

/// The restart policy table from config.json, or why there is none.
fn policies(inputs: &Inputs) -> (Vec<PolicyRow>, Option<String>) {
    let Some(units) = inputs.config("supervision", "units") else {
        return (
            Vec::new(),
            Some("The build's config.json has no supervision.units (a build from before restart policies were declared): no restart policy to show.".into()),
        );
    };
    let list: Vec<Policy> = match serde_json::from_value(units.clone()) {
        Ok(l) => l,
        Err(e) => {
            return (
                Vec::new(),
                Some(format!(
                    "The build's config.json has supervision.units, but not as a list of {{\"unit\", \"restart\", \"restart_sec\", \"start_limit_burst\", \"start_limit_interval_sec\", \"why\"}}: {e}"
                )),
            );
        }
    };
    let rows = list
        .into_iter()
        .map(|p| PolicyRow {
            restart: p.restart.unwrap_or_else(dash),
            restart_sec: secs(p.restart_sec),
            start_limit: format!(
                "{} in {}",
                num(p.start_limit_burst),
                secs(p.start_limit_interval_sec)
            ),
            why: p.why.unwrap_or_else(dash),
            unit: p.unit,
        })
        .collect();
    (rows, None)
}

fn secs(x: Option<f64>) -> String {
    x.map_or_else(dash, |_| format!("{} s", num(x)))
}

/// Whole numbers without a fraction ("200", not "200.0"); others as written.
fn num(x: Option<f64>) -> String {
    match x {
        None => dash(),
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", x as i64),
        Some(x) => format!("{x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_written() {
        assert_eq!(num(Some(200.0)), "200");
        assert_eq!(num(Some(4.85)), "4.85");
        assert_eq!(num(None), "—");
        assert_eq!(secs(Some(2.0)), "2 s");
        assert_eq!(secs(None), "—");
    }
}
