//! Benchmark controls (CIS Debian Linux 12) as data: the controls the
//! modules declare with the live check that proves each
//! (`compliance.controls`), the deviations the profile accepts
//! (`compliance.accepted_controls`), what the image's own check found
//! (`/var/log/hardroot-audit/controls.tsv`, written by module compliance's
//! `check-controls`), and the one verdict rule that both the VM test (the
//! Rhai global `controls_check`) and the HTML report apply.
//!
//! The rule: every declared control must be met, each must have a result,
//! no result may name an undeclared control, and the met share of all
//! controls (met + accepted) must reach `compliance.min_percent`.
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// `compliance.min_percent` when the config does not set it (the option's default).
pub const DEFAULT_MIN_PERCENT: u64 = 95;

/// A control a module declares.
#[derive(Debug, Clone, Serialize)]
pub struct Control {
    pub id: String,
    pub title: String,
}

/// A control the profile does not meet on purpose.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    pub id: String,
    pub reason: String,
}

/// What config.json's `compliance` says.
#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    pub benchmark: String,
    pub controls: Vec<Control>,
    pub accepted: Vec<Accepted>,
    pub min_percent: u64,
}

/// A string field of a config.json record, "" when absent (also used by src/lynis.rs).
pub(crate) fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The records of a list option, none when absent.
pub(crate) fn records<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

impl Policy {
    /// From the evaluated options; None when the profile does not import module compliance.
    pub fn from_config(config: Option<&Value>) -> Option<Policy> {
        let c = config?.get("compliance")?;
        Some(Policy {
            benchmark: text(c, "benchmark"),
            controls: records(c, "controls")
                .map(|r| Control {
                    id: text(r, "id"),
                    title: text(r, "title"),
                })
                .collect(),
            accepted: records(c, "accepted_controls")
                .map(|r| Accepted {
                    id: text(r, "id"),
                    reason: text(r, "reason"),
                })
                .collect(),
            min_percent: c
                .get("min_percent")
                .and_then(Value::as_u64)
                .unwrap_or(DEFAULT_MIN_PERCENT),
        })
    }
}

/// One line of controls.tsv: `met|failed<TAB>id<TAB>what the check printed`.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub id: String,
    pub met: bool,
    pub output: String,
}

pub fn parse(tsv: &str) -> Vec<Checked> {
    tsv.lines()
        .filter_map(|line| {
            let mut f = line.splitn(3, '\t');
            let (result, id) = (f.next()?, f.next()?);
            Some(Checked {
                id: id.to_string(),
                met: result == "met",
                output: f.next().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Met,
    Failed,
    /// Declared, but the check left no result.
    Missing,
    Accepted,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub id: String,
    pub title: String,
    pub status: Status,
    /// What the check printed, or the accepted reason.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub benchmark: String,
    pub passed: bool,
    /// In benchmark order (1.1.1.2 before 1.1.1.10).
    pub rows: Vec<Row>,
    pub met: usize,
    /// Declared + accepted.
    pub total: usize,
    pub percent: f64,
    pub min_percent: u64,
    /// One line per reason the test fails; empty when it passes.
    pub failures: Vec<String>,
}

impl Verdict {
    pub fn message(&self) -> String {
        let head = format!(
            "{}: {} of {} controls met ({:.1} %, minimum {} %), {} accepted",
            self.benchmark,
            self.met,
            self.total,
            self.percent,
            self.min_percent,
            self.rows
                .iter()
                .filter(|r| r.status == Status::Accepted)
                .count()
        );
        if self.passed {
            return head;
        }
        let mut s = format!("{head}; failed ({}):", self.failures.len());
        for f in &self.failures {
            s.push_str("\n  ");
            s.push_str(f);
        }
        s
    }
}

/// `1.1.1.10` after `1.1.1.9`: numeric parts compared as numbers.
fn benchmark_order(id: &str) -> Vec<(u64, String)> {
    id.split('.')
        .map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            (
                digits.parse().unwrap_or(u64::MAX),
                p[digits.len()..].to_string(),
            )
        })
        .collect()
}

/// The rule (see the module comment).
pub fn judge(results: &[Checked], policy: &Policy) -> Verdict {
    let mut failures = Vec::new();
    let by_id: BTreeMap<&str, &Checked> = results.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut rows: Vec<Row> = Vec::new();
    let accepted = |id: &str| policy.accepted.iter().any(|a| a.id == id);
    for c in policy.controls.iter().filter(|c| !accepted(&c.id)) {
        let (status, detail) = match by_id.get(c.id.as_str()) {
            Some(r) if r.met => (Status::Met, r.output.clone()),
            Some(r) => {
                failures.push(format!("{} {}: not met: {}", c.id, c.title, r.output));
                (Status::Failed, r.output.clone())
            }
            None => {
                failures.push(format!("{} {}: the check left no result", c.id, c.title));
                (Status::Missing, String::new())
            }
        };
        rows.push(Row {
            id: c.id.clone(),
            title: c.title.clone(),
            status,
            detail,
        });
    }
    // A profile may accept a control a module declares: a deliberate
    // deviation of this one server (the bastion's root-owned homes). The
    // reason stands and counts as not met; the live result is shown beside it.
    for a in &policy.accepted {
        let declared = policy.controls.iter().find(|c| c.id == a.id);
        let live = by_id.get(a.id.as_str()).map_or(String::new(), |r| {
            let seen = if r.met { "met" } else { "not met" };
            format!(
                " (live check: {seen}{}{})",
                if r.output.is_empty() { "" } else { ": " },
                r.output
            )
        });
        rows.push(Row {
            id: a.id.clone(),
            title: declared.map_or(String::new(), |c| c.title.clone()),
            status: Status::Accepted,
            detail: format!("{}{live}", a.reason),
        });
    }
    for r in results {
        if !policy.controls.iter().any(|c| c.id == r.id) {
            failures.push(format!(
                "{}: a result for a control the build does not declare (an image of another build?)",
                r.id
            ));
        }
    }
    rows.sort_by_key(|r| benchmark_order(&r.id));
    let met = rows.iter().filter(|r| r.status == Status::Met).count();
    let total = rows.len();
    let percent = if total == 0 {
        0.0
    } else {
        100.0 * met as f64 / total as f64
    };
    if total == 0 {
        failures.push("no control is declared (compliance.controls is empty)".to_string());
    } else if percent < policy.min_percent as f64 {
        failures.push(format!(
            "{met} of {total} controls met ({percent:.1} %), below compliance.min_percent = {}",
            policy.min_percent
        ));
    }
    Verdict {
        benchmark: policy.benchmark.clone(),
        passed: failures.is_empty(),
        rows,
        met,
        total,
        percent,
        min_percent: policy.min_percent,
        failures,
    }
}

/// Reads both files and judges: what the VM test calls.
pub fn judge_files(tsv: &Path, config: &Path) -> Result<Verdict, String> {
    let config: Value = std::fs::read_to_string(config)
        .map_err(|e| format!("cannot read {}: {e}", config.display()))
        .and_then(|t| {
            serde_json::from_str(&t)
                .map_err(|e| format!("{} is not valid JSON: {e}", config.display()))
        })?;
    let policy = Policy::from_config(Some(&config)).ok_or_else(|| {
        "the build does not import module compliance: no control is declared".to_string()
    })?;
    let tsv = std::fs::read(tsv)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| format!("cannot read {}: {e}", tsv.display()))?;
    Ok(judge(&parse(&tsv), &policy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(min: u64) -> Policy {
        Policy::from_config(Some(&json!({"compliance": {
            "benchmark": "CIS",
            "min_percent": min,
            "controls": [
                {"id": "1.1.1.10", "title": "ten", "check": "true"},
                {"id": "1.1.1.9", "title": "nine", "check": "true"},
                {"id": "5.1.14", "title": "loglevel", "check": "true"},
            ],
            "accepted_controls": [{"id": "1.4.1", "reason": "no bootloader password"}],
        }})))
        .unwrap()
    }

    #[test]
    fn every_declared_control_met_passes_and_rows_follow_the_benchmark() {
        let tsv = "met\t1.1.1.9\tok\nmet\t1.1.1.10\tok\nmet\t5.1.14\tloglevel VERBOSE\n";
        let v = judge(&parse(tsv), &policy(75));
        assert!(v.passed, "{}", v.message());
        let ids: Vec<_> = v.rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["1.1.1.9", "1.1.1.10", "1.4.1", "5.1.14"]);
        assert_eq!((v.met, v.total), (3, 4));
        assert!(v.message().contains("3 of 4 controls met (75.0 %"));
    }

    #[test]
    fn a_failed_missing_or_unknown_control_fails_and_says_what_the_check_found() {
        let tsv = "failed\t1.1.1.9\tloglevel INFO, want verbose\nmet\t5.1.14\t\nmet\t9.9\tx\n";
        let v = judge(&parse(tsv), &policy(0));
        assert!(!v.passed);
        let all = v.failures.join("\n");
        for want in [
            "1.1.1.9 nine: not met: loglevel INFO, want verbose",
            "1.1.1.10 ten: the check left no result",
            "9.9: a result for a control the build does not declare",
        ] {
            assert!(all.contains(want), "{want} not in {all}");
        }
    }

    #[test]
    fn too_many_accepted_deviations_fail_the_share() {
        let tsv = "met\t1.1.1.9\t\nmet\t1.1.1.10\t\nmet\t5.1.14\t\n";
        let v = judge(&parse(tsv), &policy(95));
        assert!(!v.passed);
        assert!(v.failures[0].contains("below compliance.min_percent = 95"));
    }

    #[test]
    fn a_profile_accepting_a_declared_control_shows_its_reason_and_the_live_result() {
        let mut p = policy(0);
        p.accepted.push(Accepted {
            id: "5.1.14".into(),
            reason: "this server logs less".into(),
        });
        let tsv = "met\t1.1.1.9\t\nmet\t1.1.1.10\t\nfailed\t5.1.14\tloglevel INFO\n";
        let v = judge(&parse(tsv), &p);
        assert!(v.passed, "{}", v.message());
        let row = v.rows.iter().find(|r| r.id == "5.1.14").unwrap();
        assert_eq!(row.status, Status::Accepted);
        assert_eq!(row.title, "loglevel");
        assert_eq!(
            row.detail,
            "this server logs less (live check: not met: loglevel INFO)"
        );
        assert_eq!((v.met, v.total), (2, 4), "accepted counts as not met");
    }

    #[test]
    fn no_compliance_module_is_no_policy() {
        assert!(Policy::from_config(Some(&json!({"ssh": {}}))).is_none());
    }
}
