//! Names in `when` conditions and `assert` expressions are checked against the
//! declared options before anything is evaluated. Tera reads an unknown name in
//! a condition as false, so without this a typo (`cfg.enabel`) would silently
//! switch a file, a unit or an assertion off.
use super::CODE_TEMPLATE;
use crate::diag::Located;
use crate::model::module::{CheckKind, Module};
use crate::model::types::did_you_mean;
use crate::source::Site;
use tera::ast::{Expr, ExprVal, Node};

pub fn check_modules(modules: &[Module]) -> Result<(), Located> {
    for m in modules {
        for (expr, site) in expressions(m) {
            check_expr(expr, m, modules).map_err(|msg| {
                Located::new(CODE_TEMPLATE, site, msg)
                    .label("in this condition")
                    .help("conditions read `cfg` (this module's options), `profile` and the imported modules by name; `x is defined` tests for an optional one")
            })?;
        }
    }
    Ok(())
}

/// Every condition and assertion expression of a module, with where it is written.
fn expressions<'a>(m: &'a Module) -> Vec<(&'a str, &'a Site)> {
    let mut out: Vec<(&'a str, &'a Site)> = Vec::new();
    let mut add = |when: &'a Option<String>, site: &'a Site| {
        if let Some(w) = when {
            out.push((w.as_str(), site));
        }
    };
    m.packages.iter().for_each(|p| add(&p.when, &p.site));
    m.mask.iter().for_each(|u| add(&u.when, &u.site));
    m.disable.iter().for_each(|u| add(&u.when, &u.site));
    m.enable.iter().for_each(|u| add(&u.when, &u.site));
    m.sets.iter().for_each(|s| add(&s.when, &s.option_site));
    m.files.iter().for_each(|f| add(&f.when, &f.target_site));
    m.files
        .iter()
        .for_each(|f| add(&f.for_each, &f.target_site));
    m.dirs.iter().for_each(|f| add(&f.when, &f.target_site));
    m.symlinks.iter().for_each(|l| add(&l.when, &l.target_site));
    for check in m.assertions.iter().chain(&m.warnings) {
        if let CheckKind::Assert { expr, .. } = &check.kind {
            out.push((expr.as_str(), &check.site));
        }
    }
    out
}

fn check_expr(expr: &str, m: &Module, modules: &[Module]) -> Result<(), String> {
    let text = format!("{{% if {expr} %}}1{{% endif %}}");
    let template = tera::Template::new("condition", None, &text).map_err(|e| {
        format!(
            "`{expr}` is not a Tera expression: {}",
            super::tmpl_error(&e)
        )
    })?;
    let mut names = Vec::new();
    for node in &template.ast {
        if let Node::If(cond, _) = node {
            for (_, e, _) in &cond.conditions {
                collect(e, &mut names);
            }
        }
    }
    let guarded: Vec<&str> = names.iter().filter_map(|n| n.strip_prefix('?')).collect();
    names
        .iter()
        .filter(|n| !n.starts_with('?'))
        .filter(|n| !guarded.iter().any(|g| is_under(n, g)))
        .try_for_each(|name| check_name(name, expr, m, modules))
}

/// The variable names an expression reads (not those only tested with `is defined`).
fn collect(e: &Expr, out: &mut Vec<String>) {
    collect_val(&e.val, out);
    for f in &e.filters {
        f.args.values().for_each(|a| collect(a, out));
    }
}

fn collect_val(v: &ExprVal, out: &mut Vec<String>) {
    match v {
        ExprVal::Ident(name) => out.push(name.clone()),
        ExprVal::Math(x) => {
            collect(&x.lhs, out);
            collect(&x.rhs, out);
        }
        ExprVal::Logic(x) => {
            collect(&x.lhs, out);
            collect(&x.rhs, out);
        }
        ExprVal::In(x) => {
            collect(&x.lhs, out);
            collect(&x.rhs, out);
        }
        ExprVal::Test(t) => {
            if t.name == "defined" || t.name == "undefined" {
                // `x is defined` guards every other use of `x` in the expression.
                out.push(format!("?{}", t.ident));
            } else {
                out.push(t.ident.clone());
            }
            t.args.iter().for_each(|a| collect(a, out));
        }
        ExprVal::FunctionCall(f) => f.args.values().for_each(|a| collect(a, out)),
        ExprVal::MacroCall(c) => c.args.values().for_each(|a| collect(a, out)),
        ExprVal::Array(items) => items.iter().for_each(|a| collect(a, out)),
        ExprVal::StringConcat(s) => s.values.iter().for_each(|v| collect_val(v, out)),
        ExprVal::String(_) | ExprVal::Int(_) | ExprVal::Float(_) | ExprVal::Bool(_) => {}
    }
}

/// "crowdsec.enable" is under "crowdsec"; "crowdsecx" is not.
fn is_under(name: &str, guard: &str) -> bool {
    name.strip_prefix(guard)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// "cfg.listeners[0].port" → ("cfg", Some("listeners")).
fn head_and_option(name: &str) -> (&str, Option<&str>) {
    let end = name.find(['.', '[']).unwrap_or(name.len());
    let (head, rest) = name.split_at(end);
    let option = rest
        .strip_prefix('.')
        .map(|r| r.split(['.', '[']).next().unwrap_or(r));
    (head, option)
}

fn check_name(name: &str, expr: &str, m: &Module, modules: &[Module]) -> Result<(), String> {
    let (head, option) = head_and_option(name);
    let target = match head {
        "cfg" => m,
        "profile" => return Ok(()),
        other => match modules.iter().find(|x| x.name == other) {
            Some(x) => x,
            None => {
                let mut known: Vec<String> = modules.iter().map(|x| x.name.clone()).collect();
                known.extend(["cfg".to_string(), "profile".to_string()]);
                return Err(format!(
                    "`{expr}` reads `{head}`, which is not `cfg`, `profile` or an imported module{}",
                    did_you_mean(head, &known)
                ));
            }
        },
    };
    match option {
        Some(o) if !target.options.contains_key(o) => {
            let names: Vec<String> = target.options.keys().cloned().collect();
            Err(format!(
                "`{expr}` reads `{name}`, but module `{}` has no option `{o}`{}",
                target.name,
                did_you_mean(o, &names)
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::head_and_option;

    #[test]
    fn names_split_into_module_and_option() {
        assert_eq!(head_and_option("cfg.port"), ("cfg", Some("port")));
        assert_eq!(
            head_and_option("fw.listeners[0].port"),
            ("fw", Some("listeners"))
        );
        assert_eq!(head_and_option("cfg"), ("cfg", None));
        assert_eq!(head_and_option("x['y']"), ("x", None));
    }
}
