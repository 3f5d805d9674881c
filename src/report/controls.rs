//! Section "Benchmark controls (CIS)": every control the modules declare
//! with what its live check found in the guest, and every deviation the
//! profile accepts with its reason. The verdict is `crate::compliance::judge`,
//! the rule the test itself applies.
use super::inputs::Inputs;
use crate::compliance::{self, Status, Verdict};
use serde::Serialize;

/// Where the acceptance test copies the guest's controls.tsv.
pub const RESULTS_FILE: &str = "controls/controls.tsv";

#[derive(Serialize)]
pub struct Controls {
    /// False: the build declares no controls (no module compliance).
    pub declared: bool,
    /// False: the run has no controls.tsv (the test did not get that far).
    pub ran: bool,
    pub verdict: Option<Verdict>,
    pub accepted: usize,
    pub failed: usize,
    /// The met share, one decimal ("96.4").
    pub percent: String,
}

pub fn collect(inputs: &Inputs) -> Controls {
    let Some(policy) = compliance::Policy::from_config(inputs.build.config.as_ref()) else {
        return Controls {
            declared: false,
            ran: false,
            verdict: None,
            accepted: 0,
            failed: 0,
            percent: String::new(),
        };
    };
    let text = inputs.run_file(RESULTS_FILE);
    let verdict = compliance::judge(&compliance::parse(text.as_deref().unwrap_or("")), &policy);
    let count = |s: Status| verdict.rows.iter().filter(|r| r.status == s).count();
    Controls {
        declared: true,
        ran: text.is_some(),
        accepted: count(Status::Accepted),
        failed: count(Status::Failed) + count(Status::Missing),
        percent: format!("{:.1}", verdict.percent),
        verdict: Some(verdict),
    }
}
