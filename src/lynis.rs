//! Lynis, the outside auditor of the acceptance test, as data: its report
//! file (`/var/log/lynis-report.dat`), what the profile says about its
//! findings, and the one verdict rule that both the VM test (the Rhai global
//! `lynis_verdict`) and the HTML report (section "Independent audit") apply.
//!
//! The policy comes from the build's config.json, never from code here:
//! - `compliance.lynis_min_index`: the lowest hardening index that passes;
//! - `compliance.lynis_accepted`: `{ id, reason }` records the profile accepts;
//! - `compliance.lynis_answers`: `{ id, by, how }` records, each added by the module that
//!   answers a finding (e.g. CrowdSec where Lynis asks for fail2ban).
//!
//! An id is Lynis' test id, optionally with a detail, in the syntax of Lynis'
//! own `skip-test=`: `SSH-7408` (every finding of the test) or
//! `SSH-7408:AllowTcpForwarding` (only the finding about that item).
//!
//! The rule: the test fails when the index is missing or below the minimum,
//! on any warning, and on any suggestion that is neither answered nor accepted.
use crate::compliance::{records, text};
use serde::Serialize;
use serde_json::Value;

/// `compliance.lynis_min_index` when the config does not set it (the option's default).
pub const DEFAULT_MIN_INDEX: u64 = 90;

/// What `lynis-report.dat` says.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub version: Option<String>,
    pub hardening_index: Option<u64>,
    pub tests_done: Option<u64>,
    pub started: Option<String>,
    pub ended: Option<String>,
    /// Test ids Lynis skipped (`skip-test=` of the profile, or not applicable).
    pub skipped: Vec<String>,
    pub warnings: Vec<Finding>,
    pub suggestions: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    pub id: String,
    pub text: String,
    /// The item it is about ("AllowTcpForwarding (set YES to NO)"), or "".
    pub details: String,
    pub solution: String,
}

impl Finding {
    /// `ID` or `ID:detail`, the way accepted findings name it.
    pub fn name(&self) -> String {
        if self.details.is_empty() {
            self.id.clone()
        } else {
            format!("{}:{}", self.id, self.details)
        }
    }

    /// Does a policy id (`SSH-7408` or `SSH-7408:AllowTcpForwarding`) name this finding?
    /// The detail matches the finding's details case-insensitively, whole or
    /// up to the first space ("AllowTcpForwarding" names "AllowTcpForwarding (set YES to NO)");
    /// a finding without details matches a detail that is a whole word of its text
    /// (`FILE-6310:/tmp`, `NETW-3200:dccp`).
    pub fn matches(&self, policy_id: &str) -> bool {
        let (id, detail) = match policy_id.split_once(':') {
            Some((id, d)) => (id.trim(), Some(d.trim())),
            None => (policy_id.trim(), None),
        };
        if !id.eq_ignore_ascii_case(&self.id) {
            return false;
        }
        let Some(detail) = detail else { return true };
        let want = detail.to_ascii_lowercase();
        if want.is_empty() {
            return false;
        }
        if self.details.is_empty() {
            // No details: some tests tell their findings apart in the text
            // only (FILE-6310 "… place /tmp on a separate partition", NETW-3200
            // "protocol 'dccp'"): the detail is then a whole word of the text.
            return contains_word(&self.text.to_ascii_lowercase(), &want);
        }
        let have = self.details.to_ascii_lowercase();
        have == want || have.starts_with(&format!("{want} "))
    }
}

/// `word` occurs in `text` with neither a letter, a digit nor `_` right before or after it.
fn contains_word(text: &str, word: &str) -> bool {
    let edge = |c: Option<char>| !c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    text.match_indices(word).any(|(at, w)| {
        edge(text[..at].chars().next_back()) && edge(text[at + w.len()..].chars().next())
    })
}

/// Lynis writes "-" or nothing for an empty field.
fn field(s: Option<&str>) -> String {
    match s.map(str::trim) {
        None | Some("-") => String::new(),
        Some(s) => s.to_string(),
    }
}

/// `TEST-ID|text|details|solution|`
fn finding(value: &str) -> Option<Finding> {
    let mut parts = value.split('|');
    let id = parts.next()?.trim();
    if id.is_empty() {
        return None;
    }
    Some(Finding {
        id: id.to_string(),
        text: field(parts.next()),
        details: field(parts.next()),
        solution: field(parts.next()),
    })
}

/// `details[]=KRNL-6000|sysctl|desc:…;field:net.ipv4.conf.all.rp_filter;prefval:1;value:0;|`:
/// (test id, field, "value → preferred") when the line names a field.
fn detail_line(value: &str) -> Option<(String, String, String)> {
    let mut parts = value.split('|');
    let id = parts.next()?.trim().to_string();
    let _service = parts.next()?;
    let mut field = None;
    let (mut value, mut preferred) = (None, None);
    for item in parts.next()?.split(';') {
        match item.split_once(':') {
            Some(("field", v)) => field = Some(v.trim().to_string()),
            Some(("value", v)) => value = Some(v.trim().to_string()),
            Some(("prefval", v)) => preferred = Some(v.trim().to_string()),
            _ => {}
        }
    }
    let field = field.filter(|f| !f.is_empty())?;
    let what = match (value, preferred) {
        (Some(v), Some(p)) => format!("set {v} to {p}"),
        (Some(v), None) => format!("is {v}"),
        _ => String::new(),
    };
    Some((id, field, what))
}

/// Reads `lynis-report.dat` (`key=value` lines, `key[]=` repeated). Never fails:
/// what is not there stays empty, and the verdict says so.
///
/// A suggestion without details whose test also wrote `details[]` lines with
/// a field (KRNL-6000: one suggestion for every sysctl that differs) becomes
/// one finding per field, so that each can be answered or accepted alone
/// (`KRNL-6000:net.ipv4.conf.all.rp_filter`).
pub fn parse(text: &str) -> Report {
    let mut r = Report::default();
    let mut details: Vec<(String, String, String)> = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key.trim() {
            "lynis_version" => r.version = Some(value.trim().to_string()),
            "hardening_index" => r.hardening_index = value.trim().parse().ok(),
            "lynis_tests_done" => r.tests_done = value.trim().parse().ok(),
            "report_datetime_start" => r.started = Some(value.trim().to_string()),
            "report_datetime_end" => r.ended = Some(value.trim().to_string()),
            "tests_skipped" => r.skipped.extend(
                value
                    .split('|')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            ),
            "warning[]" => r.warnings.extend(finding(value)),
            "suggestion[]" => r.suggestions.extend(finding(value)),
            "details[]" => details.extend(detail_line(value)),
            _ => {}
        }
    }
    r.suggestions = split_by_details(std::mem::take(&mut r.suggestions), &details);
    r
}

fn split_by_details(found: Vec<Finding>, details: &[(String, String, String)]) -> Vec<Finding> {
    let mut out = Vec::new();
    for f in found {
        let fields: Vec<_> = details.iter().filter(|(id, ..)| *id == f.id).collect();
        if !f.details.is_empty() || fields.is_empty() {
            out.push(f);
            continue;
        }
        for (_, field, what) in fields {
            let mut one = f.clone();
            one.details = if what.is_empty() {
                field.clone()
            } else {
                format!("{field} ({what})")
            };
            out.push(one);
        }
    }
    out
}

/// A finding the profile accepts, with why.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    pub id: String,
    pub reason: String,
}

/// A finding a module answers (another mechanism than the one Lynis looks for).
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub id: String,
    /// The module or option that answers it, e.g. `crowdsec` or `ssh.allow_tcp_forwarding`.
    pub by: String,
    pub how: String,
}

/// What the profile says about Lynis' findings (from config.json).
#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    pub min_index: u64,
    pub accepted: Vec<Accepted>,
    pub answers: Vec<Answer>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_index: DEFAULT_MIN_INDEX,
            accepted: Vec::new(),
            answers: Vec::new(),
        }
    }
}

impl Policy {
    /// From the evaluated options (config.json: `{ module: { option: value } }`).
    /// A config without the compliance module gets the defaults: minimum 90, nothing accepted.
    pub fn from_config(config: Option<&Value>) -> Policy {
        let mut p = Policy::default();
        let Some(modules) = config.and_then(Value::as_object) else {
            return p;
        };
        let Some(c) = modules.get("compliance") else {
            return p;
        };
        if let Some(min) = c.get("lynis_min_index").and_then(Value::as_u64) {
            p.min_index = min;
        }
        p.accepted = records(c, "lynis_accepted")
            .map(|a| Accepted {
                id: text(a, "id"),
                reason: text(a, "reason"),
            })
            .collect();
        p.answers = records(c, "lynis_answers")
            .map(|a| Answer {
                id: text(a, "id"),
                by: text(a, "by"),
                how: text(a, "how"),
            })
            .collect();
        p
    }
}

/// What answers a finding, by the policy.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resolution {
    Answered {
        by: String,
        how: String,
    },
    Accepted {
        reason: String,
    },
    /// Neither: fails the test (a warning fails it in any case).
    Open,
}

#[derive(Debug, Clone, Serialize)]
pub struct Judged {
    /// "warning" or "suggestion".
    pub kind: &'static str,
    pub finding: Finding,
    pub resolution: Resolution,
    /// This finding alone fails the test.
    pub fails: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub passed: bool,
    pub hardening_index: Option<u64>,
    pub min_index: u64,
    pub findings: Vec<Judged>,
    /// One line per reason the test fails; empty when it passes.
    pub failures: Vec<String>,
    /// Policy entries that named no finding of this run (stale, or the id is mistyped).
    pub unused: Vec<String>,
}

impl Verdict {
    /// The failures as one message (what the test prints when it fails).
    pub fn message(&self) -> String {
        if self.passed {
            let index = self.hardening_index.unwrap_or_default();
            return format!(
                "Lynis: hardening index {index} (minimum {}), no warning, every suggestion answered or accepted",
                self.min_index
            );
        }
        let mut s = format!("Lynis audit failed ({}):", self.failures.len());
        for f in &self.failures {
            s.push_str("\n  ");
            s.push_str(f);
        }
        s
    }
}

fn resolve(f: &Finding, policy: &Policy) -> Resolution {
    if let Some(a) = policy.answers.iter().find(|a| f.matches(&a.id)) {
        return Resolution::Answered {
            by: a.by.clone(),
            how: a.how.clone(),
        };
    }
    if let Some(a) = policy.accepted.iter().find(|a| f.matches(&a.id)) {
        return Resolution::Accepted {
            reason: a.reason.clone(),
        };
    }
    Resolution::Open
}

fn describe(f: &Finding) -> String {
    let mut s = format!("{}: {}", f.id, f.text);
    if !f.details.is_empty() {
        s.push_str(&format!(" [{}]", f.details));
    }
    s
}

/// The rule (see the module comment).
pub fn judge(report: &Report, policy: &Policy) -> Verdict {
    let mut failures = Vec::new();
    match report.hardening_index {
        None => failures.push(
            "no hardening_index in lynis-report.dat: Lynis did not finish its audit".to_string(),
        ),
        Some(i) if i < policy.min_index => failures.push(format!(
            "hardening index {i} is below compliance.lynis_min_index = {}",
            policy.min_index
        )),
        Some(_) => {}
    }
    let mut findings = Vec::new();
    for (kind, list) in [
        ("warning", &report.warnings),
        ("suggestion", &report.suggestions),
    ] {
        for f in list {
            let resolution = resolve(f, policy);
            let fails = kind == "warning" || resolution == Resolution::Open;
            if fails {
                let note = match (&resolution, kind) {
                    (Resolution::Open, "warning") => "warning",
                    (_, "warning") => "warning (a warning fails even when answered or accepted)",
                    _ => {
                        "suggestion neither answered (compliance.lynis_answers) nor accepted (compliance.lynis_accepted)"
                    }
                };
                failures.push(format!("{note}: {}", describe(f)));
            }
            findings.push(Judged {
                kind,
                finding: f.clone(),
                resolution,
                fails,
            });
        }
    }
    let all: Vec<&Finding> = report.warnings.iter().chain(&report.suggestions).collect();
    let unused = policy
        .answers
        .iter()
        .map(|a| (&a.id, format!("compliance.lynis_answers, by {}", a.by)))
        .chain(
            policy
                .accepted
                .iter()
                .map(|a| (&a.id, "compliance.lynis_accepted".to_string())),
        )
        .filter(|(id, _)| !all.iter().any(|f| f.matches(id)))
        .map(|(id, from)| format!("{id} ({from})"))
        .collect();
    Verdict {
        passed: failures.is_empty(),
        hardening_index: report.hardening_index,
        min_index: policy.min_index,
        findings,
        failures,
        unused,
    }
}

/// Reads both files and judges: what the VM test calls. A missing or
/// unreadable report is a failure of the verdict, not an error.
pub fn judge_files(report: &std::path::Path, config: &std::path::Path) -> Result<Verdict, String> {
    let config: Value = match std::fs::read_to_string(config) {
        Ok(t) => serde_json::from_str(&t)
            .map_err(|e| format!("{} is not valid JSON: {e}", config.display()))?,
        Err(e) => return Err(format!("cannot read {}: {e}", config.display())),
    };
    let text = std::fs::read(report)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| format!("cannot read {}: {e}", report.display()))?;
    Ok(judge(&parse(&text), &Policy::from_config(Some(&config))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DAT: &str = "\
# Lynis Report
report_version_major=1
lynis_version=3.0.8
report_datetime_start=2026-12-02 02:00:00
hardening_index=73
lynis_tests_done=250
tests_skipped=KRNL-5830|PKGS-7392|
warning[]=NETW-2705|Couldn't find 2 responsive nameservers|-|-|
suggestion[]=SSH-7408|Consider hardening SSH configuration|AllowTcpForwarding (set YES to NO)|-|
suggestion[]=SSH-7408|Consider hardening SSH configuration|MaxSessions (set 10 to 2)|-|
suggestion[]=KRNL-6000|One or more sysctl values differ from the scan profile and could be tweaked||Change sysctl value or disable test (skip-test=KRNL-6000:<sysctl-key>)|
details[]=KRNL-6000|sysctl|desc:Log martians;field:net.ipv4.conf.default.log_martians;prefval:1;value:0;|
details[]=KRNL-6000|sysctl|desc:Disable dccp;field:dev.tty.ldisc_autoload;prefval:0;value:1;|
suggestion[]=DEB-0880|Install fail2ban to automatically ban hosts that commit multiple authentication errors.|-|-|
garbage line without equals
suggestion[]=|no id|-|-|
";

    #[test]
    fn the_report_file_is_parsed_field_by_field() {
        let r = parse(DAT);
        assert_eq!(r.version.as_deref(), Some("3.0.8"));
        assert_eq!(r.hardening_index, Some(73));
        assert_eq!(r.tests_done, Some(250));
        assert_eq!(r.skipped, ["KRNL-5830", "PKGS-7392"]);
        assert_eq!(r.warnings.len(), 1);
        assert_eq!(r.warnings[0].id, "NETW-2705");
        assert_eq!(r.warnings[0].details, "", "'-' is no detail");
        let s: Vec<String> = r.suggestions.iter().map(Finding::name).collect();
        assert_eq!(
            s,
            [
                "SSH-7408:AllowTcpForwarding (set YES to NO)",
                "SSH-7408:MaxSessions (set 10 to 2)",
                "KRNL-6000:net.ipv4.conf.default.log_martians (set 0 to 1)",
                "KRNL-6000:dev.tty.ldisc_autoload (set 1 to 0)",
                "DEB-0880",
            ]
        );
        assert!(r.suggestions[2].solution.starts_with("Change sysctl value"));
    }

    #[test]
    fn an_empty_or_truncated_report_has_no_index() {
        let r = parse("lynis_version=3.0.8\nsuggestion[]=SSH-7408|x");
        assert_eq!(r.hardening_index, None);
        assert_eq!(r.suggestions[0].text, "x");
        let v = judge(&r, &Policy::default());
        assert!(!v.passed);
        assert!(v.failures[0].contains("no hardening_index"));
    }

    #[test]
    fn ids_match_whole_tests_or_one_detail() {
        let r = parse(DAT);
        let f = &r.suggestions[0];
        assert!(f.matches("SSH-7408"));
        assert!(f.matches("ssh-7408:allowtcpforwarding"));
        assert!(f.matches("SSH-7408:AllowTcpForwarding (set YES to NO)"));
        assert!(!f.matches("SSH-7408:AllowTcp"), "a detail is a whole word");
        assert!(!f.matches("SSH-7408:MaxSessions"));
        assert!(!f.matches("SSH-740"));
        assert!(!f.matches("SSH-7408:"));
        assert!(r.suggestions[2].matches("KRNL-6000:net.ipv4.conf.default.log_martians"));
        let tmp = parse(
            "suggestion[]=FILE-6310|To decrease the impact of a full /tmp file system, place /tmp on a separate partition|-|-|\nsuggestion[]=NETW-3200|Determine if protocol 'dccp' is really needed on this system|-|-|\n",
        );
        assert!(
            tmp.suggestions[0].matches("FILE-6310:/tmp"),
            "no details: a word of the text"
        );
        assert!(!tmp.suggestions[0].matches("FILE-6310:/var"));
        assert!(
            !tmp.suggestions[0].matches("FILE-6310:tm"),
            "whole words only"
        );
        assert!(tmp.suggestions[1].matches("NETW-3200:dccp"));
        assert!(!tmp.suggestions[1].matches("NETW-3200:sctp"));
        assert!(!r.suggestions[3].matches("KRNL-6000:net.ipv4.conf.default.log_martians"));
    }

    fn config() -> Value {
        json!({
            "compliance": {
                "lynis_min_index": 70,
                "lynis_accepted": [
                    { "id": "SSH-7408:AllowTcpForwarding", "reason": "admins tunnel to the admin port" },
                    { "id": "KRNL-6000", "reason": "the profile sets its own sysctls" },
                    { "id": "NETW-2705", "reason": "accepting a warning does not pass it" },
                    { "id": "FILE-9999", "reason": "stale" },
                ],
                "lynis_answers": [
                    { "id": "DEB-0880", "by": "crowdsec", "how": "CrowdSec bans at the firewall" },
                    { "id": "SSH-7408:MaxSessions", "by": "ssh.max_sessions", "how": "set per profile" },
                ],
            },
        })
    }

    #[test]
    fn the_policy_comes_from_the_config() {
        let p = Policy::from_config(Some(&config()));
        assert_eq!(p.min_index, 70);
        assert_eq!(p.accepted.len(), 4);
        let by: Vec<&str> = p.answers.iter().map(|a| a.by.as_str()).collect();
        assert_eq!(by, ["crowdsec", "ssh.max_sessions"]);
        let none = Policy::from_config(None);
        assert_eq!(none.min_index, DEFAULT_MIN_INDEX);
        assert_eq!(
            Policy::from_config(Some(&json!({"ssh": {}}))).min_index,
            90,
            "no compliance module: the default"
        );
    }

    #[test]
    fn warnings_fail_and_suggestions_fail_unless_answered_or_accepted() {
        let r = parse(DAT);
        let v = judge(&r, &Policy::from_config(Some(&config())));
        assert!(!v.passed);
        assert_eq!(v.hardening_index, Some(73));
        let res: Vec<(String, &Resolution, bool)> = v
            .findings
            .iter()
            .map(|j| (j.finding.name(), &j.resolution, j.fails))
            .collect();
        assert!(
            matches!(res[0].1, Resolution::Accepted { .. }) && res[0].2,
            "a warning fails even when accepted"
        );
        assert!(matches!(res[1].1, Resolution::Accepted { .. }) && !res[1].2);
        assert!(
            matches!(res[2].1, Resolution::Answered { by, .. } if by == "ssh.max_sessions")
                && !res[2].2
        );
        assert!(
            !res[3].2 && !res[4].2,
            "KRNL-6000 accepted as a whole: {res:?}"
        );
        assert!(matches!(res[5].1, Resolution::Answered { by, .. } if by == "crowdsec"));
        assert_eq!(v.failures.len(), 1, "{:?}", v.failures);
        assert!(v.failures[0].contains("NETW-2705"));
        assert_eq!(v.unused, ["FILE-9999 (compliance.lynis_accepted)"]);
        assert!(v.message().contains("NETW-2705"));
    }

    #[test]
    fn a_low_index_and_an_open_suggestion_are_named() {
        let r = parse(DAT);
        let v = judge(&r, &Policy::default());
        assert!(
            v.failures[0].contains("hardening index 73 is below compliance.lynis_min_index = 90")
        );
        let open: Vec<&String> = v
            .failures
            .iter()
            .filter(|f| f.starts_with("suggestion"))
            .collect();
        assert_eq!(open.len(), 5, "{:?}", v.failures);
        assert!(open.iter().any(|f| f.contains(
            "SSH-7408: Consider hardening SSH configuration [MaxSessions (set 10 to 2)]"
        )));
    }

    #[test]
    fn a_clean_report_passes() {
        let r = parse("lynis_version=3.0.8\nhardening_index=92\n");
        let v = judge(&r, &Policy::default());
        assert!(v.passed, "{:?}", v.failures);
        assert!(v.message().contains("hardening index 92 (minimum 90)"));
    }
}
