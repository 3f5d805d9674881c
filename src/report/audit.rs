//! Section "Independent audit": what Lynis, run inside the guest by the
//! acceptance test, found — its hardening index against the profile's
//! `compliance.lynis_min_index`, every warning and suggestion, and for each the
//! module that answers it or the reason the profile accepts it. The verdict
//! is `crate::lynis::judge`, the rule the test itself applies.
use super::inputs::Inputs;
use super::page::Cell;
use crate::lynis::{self, Resolution};
use serde::Serialize;

/// Where the acceptance test copies Lynis' files (OUT/lynis/).
pub const REPORT_FILE: &str = "lynis/lynis-report.dat";

#[derive(Serialize)]
pub struct Audit {
    /// False: the run has no lynis-report.dat (the test did not get that far, or runs no audit).
    pub ran: bool,
    pub version: String,
    pub index: Cell,
    pub min_index: u64,
    pub tests_done: String,
    pub started: String,
    pub ended: String,
    pub skipped: Vec<String>,
    pub passed: bool,
    pub failures: Vec<String>,
    pub unused: Vec<String>,
    pub rows: Vec<Row>,
    pub warnings: usize,
    pub suggestions: usize,
}

#[derive(Serialize)]
pub struct Row {
    pub kind: &'static str,
    pub id: String,
    pub text: String,
    pub details: String,
    pub solution: String,
    /// "answered", "accepted" or "open".
    pub status: &'static str,
    /// The module/option that answers it, or the accepted reason; coloured by the verdict.
    pub answer: Cell,
}

pub fn collect(inputs: &Inputs) -> Audit {
    let policy = lynis::Policy::from_config(inputs.build.config.as_ref());
    let Some(text) = inputs.run_file(REPORT_FILE) else {
        return Audit {
            ran: false,
            version: String::new(),
            index: Cell::na("not run"),
            min_index: policy.min_index,
            tests_done: String::new(),
            started: String::new(),
            ended: String::new(),
            skipped: Vec::new(),
            passed: false,
            failures: Vec::new(),
            unused: Vec::new(),
            rows: Vec::new(),
            warnings: 0,
            suggestions: 0,
        };
    };
    let report = lynis::parse(&text);
    let verdict = lynis::judge(&report, &policy);
    let index = match report.hardening_index {
        None => Cell::bad("missing"),
        Some(i) => Cell::judge(&i.to_string(), i >= policy.min_index),
    };
    let rows = verdict
        .findings
        .iter()
        .map(|j| {
            let (status, text) = match &j.resolution {
                Resolution::Answered { by, how } => {
                    ("answered", format!("answered by {by}: {how}"))
                }
                Resolution::Accepted { reason } => ("accepted", format!("accepted: {reason}")),
                Resolution::Open => (
                    "open",
                    "neither answered (compliance.lynis_answers) nor accepted (compliance.lynis_accepted)"
                        .to_string(),
                ),
            };
            let answer = if j.fails {
                Cell::bad(&text)
            } else {
                Cell::ok(&text)
            };
            Row {
                kind: j.kind,
                id: j.finding.id.clone(),
                text: j.finding.text.clone(),
                details: j.finding.details.clone(),
                solution: j.finding.solution.clone(),
                status,
                answer,
            }
        })
        .collect();
    let or_dash = |s: Option<String>| s.unwrap_or_else(|| "—".into());
    Audit {
        ran: true,
        version: or_dash(report.version.clone()),
        index,
        min_index: policy.min_index,
        tests_done: or_dash(report.tests_done.map(|n| n.to_string())),
        started: or_dash(report.started.clone()),
        ended: or_dash(report.ended.clone()),
        skipped: report.skipped.clone(),
        passed: verdict.passed,
        failures: verdict.failures,
        unused: verdict.unused,
        rows,
        warnings: report.warnings.len(),
        suggestions: report.suggestions.len(),
    }
}
