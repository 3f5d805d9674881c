//! Tera for values, conditions and checks: a context per module (`cfg` = its own options).
use crate::diag::Located;
use crate::source::Site;
use serde_json::Value as Json;

pub fn context_for(config: &Json, module: &str, profile: &str) -> tera::Context {
    let mut ctx = tera::Context::from_value(config.clone()).unwrap_or_default();
    ctx.insert("cfg", config.get(module).unwrap_or(&Json::Null));
    ctx.insert("profile", &serde_json::json!({ "name": profile }));
    ctx
}

pub fn render_str(template: &str, ctx: &tera::Context) -> Result<String, String> {
    tera::Tera::one_off(template, ctx, false).map_err(|e| error_chain(&e))
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
