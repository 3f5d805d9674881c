//! Tera for values, conditions and checks: a context per module (`cfg` = its own options).
use crate::diag::Located;
use crate::source::Site;
use serde_json::Value as Json;
use std::collections::HashMap;

pub fn context_for(config: &Json, module: &str, profile: &str) -> tera::Context {
    let mut ctx = tera::Context::from_value(config.clone()).unwrap_or_default();
    ctx.insert("cfg", config.get(module).unwrap_or(&Json::Null));
    ctx.insert("profile", &serde_json::json!({ "name": profile }));
    ctx
}

/// Tera functions that read the world outside the configuration: the clock and
/// randomness (an image would no longer be reproducible) and the environment
/// (a profile value could copy a CI secret into the image).
const WORLD_FUNCTIONS: &[&str] = &["now", "get_random", "get_env"];

/// The most items `range()` may make: Tera's own has no limit (and loops forever
/// on `step_by=0`), so one expression could eat all memory.
pub const MAX_RANGE: u64 = 100_000;

/// A Tera with autoescape off, no access to the clock, randomness or the
/// environment, and a bounded `range()`. Every template hardroot renders uses one.
pub fn engine() -> tera::Tera {
    let mut tera = tera::Tera::default();
    tera.autoescape_on(vec![]);
    for name in WORLD_FUNCTIONS {
        tera.register_function(name, move |_: &HashMap<String, Json>| {
            Err(tera::Error::msg(format!(
                "{name}() is not available: templates may only read the configuration, \
                 so that builds are reproducible and nothing from the build machine leaks into an image"
            )))
        });
    }
    tera.register_function("range", bounded_range);
    tera
}

fn bounded_range(args: &HashMap<String, Json>) -> tera::Result<Json> {
    let arg = |name: &str, default: Option<u64>| -> tera::Result<u64> {
        match args.get(name) {
            None => default.ok_or_else(|| tera::Error::msg(format!("range() needs `{name}`"))),
            Some(v) => v.as_u64().ok_or_else(|| {
                tera::Error::msg(format!(
                    "range(): `{name}` must be a whole number >= 0, not {v}"
                ))
            }),
        }
    };
    let start = arg("start", Some(0))?;
    let end = arg("end", None)?;
    let step = arg("step_by", Some(1))?;
    if step == 0 {
        return Err(tera::Error::msg("range(): `step_by` must not be 0"));
    }
    let count = end.saturating_sub(start).div_ceil(step);
    if count > MAX_RANGE {
        return Err(tera::Error::msg(format!(
            "range() would make {count} items; at most {MAX_RANGE} are allowed"
        )));
    }
    let items: Vec<Json> = (start..end)
        .step_by(usize::try_from(step).unwrap_or(usize::MAX))
        .map(Json::from)
        .collect();
    Ok(Json::Array(items))
}

const ONE_OFF: &str = "expression";

pub fn render_str(template: &str, ctx: &tera::Context) -> Result<String, String> {
    let mut tera = engine();
    tera.add_raw_template(ONE_OFF, template)
        .map_err(|e| error_chain(&e))?;
    if let Some(cycle) = super::recursion::find_cycle(&tera) {
        return Err(recursion_message(&cycle));
    }
    tera.render(ONE_OFF, ctx).map_err(|e| error_chain(&e))
}

pub fn render_value(template: &str, ctx: &tera::Context, site: &Site) -> Result<String, Located> {
    if !crate::model::raw::is_template(template) {
        return Ok(template.to_string());
    }
    render_str(template, ctx).map_err(|e| {
        Located::new(
            super::CODE_TEMPLATE,
            site,
            format!("cannot render this value: {e}"),
        )
        .label("in this template")
    })
}

pub fn recursion_message(cycle: &str) -> String {
    format!(
        "macros or includes call themselves in a circle ({cycle}); Tera has no recursion \
         limit, so this would overflow the stack: unroll it or loop with `for`"
    )
}

/// Evaluates a Tera expression as a condition.
pub fn truthy(expr: &str, ctx: &tera::Context) -> Result<bool, String> {
    let out = render_str(&format!("{{% if {expr} %}}1{{% endif %}}"), ctx)?;
    Ok(out == "1")
}

/// Tera nests the real cause several errors deep; show all of it on one line.
pub fn error_chain(e: &tera::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        parts.push(c.to_string());
        cur = c.source();
    }
    parts.join(": ")
}
