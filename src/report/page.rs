//! The page itself: every section's data into one Tera context, rendered with
//! HTML autoescaping (all text on the page comes from files and guests).
use super::inputs::Inputs;
use super::{
    audit, controls, diff, disk, exposure, facts, hardening, identity, load_faults, sbom, steps,
};
use base64::Engine;
use serde::Serialize;

const TEMPLATE: &str = include_str!("report.html.tera");

/// The only loads the page may make: its own inline style and data: images.
/// Anything else (a stray URL in guest output, an SVG's reference) is blocked.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// A measured value and whether it matches what was asked:
/// ok (green), bad (red), warn (amber), na (grey: nothing to judge).
#[derive(Serialize, Debug, Clone)]
pub struct Cell {
    pub text: String,
    pub state: &'static str,
}

impl Cell {
    pub fn ok(text: &str) -> Cell {
        Cell {
            text: text.into(),
            state: "ok",
        }
    }
    pub fn bad(text: &str) -> Cell {
        Cell {
            text: text.into(),
            state: "bad",
        }
    }
    pub fn warn(text: &str) -> Cell {
        Cell {
            text: text.into(),
            state: "warn",
        }
    }
    pub fn na(text: &str) -> Cell {
        Cell {
            text: text.into(),
            state: "na",
        }
    }
    pub fn judge(text: &str, good: bool) -> Cell {
        if good {
            Cell::ok(text)
        } else {
            Cell::bad(text)
        }
    }
}

#[derive(Serialize)]
struct Boot {
    /// The plot as a data: URI, shown with <img>: an SVG in an image cannot
    /// run scripts or load anything, whatever the guest wrote into it.
    plot: Option<String>,
    blame: Vec<(String, String)>,
    summary: Option<String>,
}

fn boot(inputs: &Inputs) -> Boot {
    let plot = std::fs::read(inputs.run.join("facts/boot-plot.svg"))
        .ok()
        .filter(|b| !b.is_empty())
        .map(|b| {
            format!(
                "data:image/svg+xml;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(b)
            )
        });
    Boot {
        plot,
        blame: inputs
            .fact("boot-blame.txt")
            .map(|t| facts::blame(&t, 10))
            .unwrap_or_default(),
        summary: inputs.fact("boot-time.txt").map(|t| steps::clean(t.trim())),
    }
}

pub fn render(inputs: &Inputs) -> Result<String, String> {
    let identity = identity::collect(inputs);
    let tests = steps::collect(inputs);
    let matrix = exposure::collect(inputs);
    let hardening = hardening::collect(inputs);
    let audit = audit::collect(inputs);
    let diff = inputs
        .against
        .as_ref()
        .map(|old| diff::collect(old, &inputs.build));
    let mut ctx = tera::Context::new();
    ctx.insert("csp", CSP);
    ctx.insert(
        "title",
        &format!("{} — {}", identity.profile, identity.test),
    );
    ctx.insert("identity", &identity);
    ctx.insert("disk", &disk::collect(inputs));
    ctx.insert("sbom", &sbom::collect(inputs));
    ctx.insert("tests", &tests);
    ctx.insert("matrix", &matrix);
    ctx.insert("boot", &boot(inputs));
    ctx.insert("hardening", &hardening);
    ctx.insert("audit", &audit);
    ctx.insert("controls", &controls::collect(inputs));
    ctx.insert("load_faults", &load_faults::collect(inputs));
    ctx.insert("diff", &diff);
    ctx.insert("problems", &inputs.problems);
    let mut tera = tera::Tera::default();
    // The .html name turns on Tera's HTML autoescaping.
    tera.add_raw_template("report.html", TEMPLATE)
        .map_err(|e| format!("report template: {e:?}"))?;
    tera.render("report.html", &ctx)
        .map_err(|e| format!("rendering the report: {e:?}"))
}
