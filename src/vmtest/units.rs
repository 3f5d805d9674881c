//! `check_units`: the units the build's manifest.json declares, against the
//! booted machine: enabled ones active (a oneshot that ran and succeeded, or
//! was skipped by its condition, counts), masked ones masked and inactive,
//! disabled ones neither enabled nor active, and no unit failed. One round
//! trip to the guest for all units.
use serde_json::Value;

/// The properties asked for, in this order.
const PROPS: &str = "LoadState,ActiveState,Result,Type,UnitFileState,ExecMainStartTimestampMonotonic,ConditionResult";
const FAILED_MARK: &str = "#hardroot-failed";
const RUNNING_MARK: &str = "#hardroot-running";

#[derive(Debug, PartialEq)]
pub enum Kind {
    Enable,
    Mask,
    Disable,
}

/// What manifest.json's `units` declares.
pub fn declared(manifest: &Value) -> Vec<(Kind, String)> {
    let mut out = Vec::new();
    let units = &manifest["units"];
    for u in units["enable"].as_array().into_iter().flatten() {
        if let Some(name) = u.get("unit").and_then(Value::as_str).or(u.as_str()) {
            out.push((Kind::Enable, name.to_string()));
        }
    }
    for (key, kind) in [("mask", Kind::Mask), ("disable", Kind::Disable)] {
        for u in units[key].as_array().into_iter().flatten() {
            if let Some(name) = u.as_str().or(u.get("unit").and_then(Value::as_str)) {
                out.push((
                    match kind {
                        Kind::Mask => Kind::Mask,
                        _ => Kind::Disable,
                    },
                    name.to_string(),
                ));
            }
        }
    }
    out
}

/// The guest command: every unit's properties, the failed units, the system state.
pub fn command(units: &[(Kind, String)]) -> String {
    let names: Vec<&str> = units.iter().map(|(_, u)| u.as_str()).collect();
    format!(
        "systemctl show -p {PROPS} -- {}; echo '{FAILED_MARK}'; systemctl --failed --plain --no-legend; echo '{RUNNING_MARK}'; systemctl is-system-running",
        names.join(" ")
    )
}

/// Judge the guest's answer: (lines for the log, failures, failed units).
pub fn judge(units: &[(Kind, String)], output: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (show, rest) = output.split_once(FAILED_MARK).unwrap_or((output, ""));
    let (failed, running) = rest.split_once(RUNNING_MARK).unwrap_or((rest, ""));
    // `systemctl show` prints one block per unit, in the order asked, blank lines between.
    let blocks: Vec<std::collections::HashMap<&str, &str>> = show
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|b| b.lines().filter_map(|l| l.split_once('=')).collect())
        .collect();
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    let mut journal = Vec::new();
    if blocks.len() != units.len() {
        bad.push(format!(
            "systemctl show gave {} answers for {} units",
            blocks.len(),
            units.len()
        ));
    }
    for ((kind, unit), b) in units.iter().zip(&blocks) {
        let p = |k: &str| b.get(k).copied().unwrap_or("");
        let state = format!("{}/{}/{}", p("LoadState"), p("ActiveState"), p("Result"));
        let (good, want) = match kind {
            // A oneshot without RemainAfterExit is inactive once it succeeded;
            // a first-boot oneshot skipped by its condition is done too.
            Kind::Enable => (
                p("ActiveState") == "active"
                    || (p("ActiveState") == "inactive"
                        && p("Type") == "oneshot"
                        && p("Result") == "success"
                        && (!matches!(p("ExecMainStartTimestampMonotonic"), "" | "0")
                            || p("ConditionResult") == "no")),
                "active",
            ),
            Kind::Mask => (
                p("LoadState") == "masked" && p("ActiveState") == "inactive",
                "masked and inactive",
            ),
            Kind::Disable => (
                p("ActiveState") != "active" && p("UnitFileState") != "enabled",
                "disabled and inactive",
            ),
        };
        if good {
            ok.push(format!("ok    {unit} {state}"));
        } else {
            bad.push(format!(
                "{unit} should be {want} ({state}, {})",
                p("UnitFileState")
            ));
            if *kind == Kind::Enable {
                journal.push(unit.clone());
            }
        }
    }
    for line in failed.lines().filter(|l| !l.trim().is_empty()) {
        bad.push(format!("failed unit: {}", line.trim()));
        if let Some(u) = line.split_whitespace().next()
            && !journal.iter().any(|j| j == u)
        {
            journal.push(u.to_string());
        }
    }
    let running = running.trim();
    if running != "running" {
        bad.push(format!("is-system-running: {running}"));
    }
    (ok, bad, journal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_judged_from_one_answer() {
        let manifest = serde_json::json!({"units": {
            "enable": [{"unit": "a.service"}, {"unit": "once.service"}, {"unit": "b.service"}],
            "mask": ["m.service"], "disable": ["d.service"]}});
        let units = declared(&manifest);
        assert_eq!(units.len(), 5);
        assert!(
            command(&units).contains("-- a.service once.service b.service m.service d.service")
        );
        let block = |load: &str, active: &str, result: &str, ty: &str, file: &str, start: &str| {
            format!(
                "LoadState={load}\nActiveState={active}\nResult={result}\nType={ty}\nUnitFileState={file}\nExecMainStartTimestampMonotonic={start}\nConditionResult=yes\n"
            )
        };
        let out = [
            block("loaded", "active", "success", "simple", "enabled", "5"),
            block("loaded", "inactive", "success", "oneshot", "enabled", "7"),
            block("loaded", "failed", "exit-code", "simple", "enabled", "9"),
            block("masked", "inactive", "success", "", "masked", "0"),
            block("loaded", "inactive", "success", "simple", "disabled", "0"),
        ]
        .join("\n")
            + "#hardroot-failed\nb.service loaded failed failed B\n#hardroot-running\ndegraded\n";
        let (ok, bad, journal) = judge(&units, &out);
        assert_eq!(ok.len(), 4, "{ok:?}");
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad[0].starts_with("b.service should be active (loaded/failed/exit-code"));
        assert!(bad[1].contains("failed unit: b.service"));
        assert_eq!(bad[2], "is-system-running: degraded");
        assert_eq!(journal, ["b.service"]);
    }
}
