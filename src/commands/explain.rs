//! `hardroot explain`: for an option, its value and every definition (which won,
//! which lost) and the files whose templates read it; for a path, the module and
//! template that made it and, line by line, which definitions shaped it (found by
//! leaving each definition out and seeing which lines change).
use super::args::ExplainArgs;
use crate::diag::report;
use crate::eval::{Config, EvalOptions, evaluate};
use crate::model::module::Priority;
use crate::render::{Kind, Rendered, normalize_target, render};
use serde_json::json;
use std::collections::BTreeMap;

pub fn explain(a: &ExplainArgs) -> miette::Result<()> {
    let opts = EvalOptions {
        profile: a.profile.clone(),
        module_dirs: a.modules.dirs.clone(),
        without: None,
    };
    let config = evaluate(&opts).map_err(report)?;
    let rendered = render(&config).map_err(report)?;
    if a.what.starts_with('/') {
        explain_path(a, &opts, &config, &rendered)
    } else {
        explain_option(a, &config, &rendered)
    }
}

fn explain_option(a: &ExplainArgs, config: &Config, rendered: &Rendered) -> miette::Result<()> {
    let (module, option) = a.what.split_once('.').ok_or_else(|| {
        miette::miette!("name an option as <module>.<option>, or a path starting with /")
    })?;
    let decl = config
        .module(module)
        .and_then(|m| m.options.get(option))
        .ok_or_else(|| miette::miette!("no option `{}` in this profile's modules", a.what))?;
    let value = config
        .option(&a.what)
        .map(|v| v.value.clone())
        .unwrap_or_default();
    let winners: Vec<usize> = config
        .option(&a.what)
        .map(|v| v.origins.iter().map(|o| o.definition).collect())
        .unwrap_or_default();
    let defs: Vec<_> = config
        .definitions
        .iter()
        .filter(|d| d.set.option == a.what)
        .collect();
    let files = files_reading(config, rendered, module, option);
    if a.json {
        let v = json!({
            "option": a.what, "type": decl.ty.name(), "description": decl.description, "value": value,
            "declared_at": decl.site.to_string(),
            "definitions": defs.iter().map(|d| json!({
                "origin": d.set.origin, "at": d.set.option_site.to_string(),
                "priority": priority_name(d.set.priority), "wins": winners.contains(&d.id),
            })).collect::<Vec<_>>(),
            "files": files,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    println!("{} = {}", a.what, value);
    println!(
        "  type: {}\n  {}\n  declared at {}",
        decl.ty.name(),
        decl.description,
        decl.site
    );
    println!("definitions:");
    for d in defs {
        let mark = if winners.contains(&d.id) {
            "used"
        } else {
            "overridden"
        };
        println!(
            "  [{mark}] {} ({}) at {}",
            d.set.origin,
            priority_name(d.set.priority),
            d.set.option_site
        );
    }
    println!("files whose templates read it:");
    for f in files {
        println!("  /{f}");
    }
    Ok(())
}

fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::OptionDefault => "option default",
        Priority::Default => "module default",
        Priority::Set => "module",
        Priority::Profile => "profile",
        Priority::Force => "force",
    }
}

/// Files whose template names the option: `cfg.<opt>` in its own module, `<module>.<opt>` anywhere.
fn files_reading(config: &Config, rendered: &Rendered, module: &str, option: &str) -> Vec<String> {
    let own = format!("cfg.{option}");
    let other = format!("{module}.{option}");
    let mut out = Vec::new();
    for e in rendered.entries.values() {
        let Some(m) = config.module(&e.module) else {
            continue;
        };
        let Some(template) = e
            .template
            .as_deref()
            .and_then(|t| t.strip_prefix(&format!("modules/{}/", m.name)))
        else {
            continue;
        };
        let text = std::fs::read_to_string(m.dir.join(template)).unwrap_or_default();
        if contains_name(&text, &other) || (m.name == module && contains_name(&text, &own)) {
            out.push(e.path.clone());
        }
    }
    out
}

fn contains_name(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(i, _)| {
        let next = text[i + name.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

fn explain_path(
    a: &ExplainArgs,
    opts: &EvalOptions,
    config: &Config,
    rendered: &Rendered,
) -> miette::Result<()> {
    let path = normalize_target(&a.what).map_err(|e| miette::miette!("{e}"))?;
    let entry = rendered
        .entries
        .get(&path)
        .ok_or_else(|| miette::miette!("/{path} is not in this profile's overlay"))?;
    let blame = match &entry.kind {
        Kind::File(bytes) => blame_lines(opts, config, &path, &String::from_utf8_lossy(bytes)),
        _ => Vec::new(),
    };
    let made_by = if entry.module.is_empty() {
        "(implied parent folder)".to_string()
    } else {
        format!("module {}", entry.module)
    };
    if a.json {
        let v = json!({
            "path": format!("/{path}"), "made_by": entry.module, "template": entry.template,
            "declared_at": entry.site.as_ref().map(|s| s.to_string()),
            "mode": format!("{:04o}", entry.mode), "owner": entry.owner, "group": entry.group,
            "lines": blame.iter().map(|(l, who)| json!({ "line": l, "from": who })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    println!("/{path}: made by {made_by}");
    if let Some(t) = &entry.template {
        println!("  template: {t}");
    }
    if let Some(s) = &entry.site {
        println!("  declared at {s}");
    }
    println!(
        "  mode {:04o}, owner {}:{}",
        entry.mode, entry.owner, entry.group
    );
    if let Kind::Symlink(t) = &entry.kind {
        println!("  -> {t}");
    }
    let width = blame
        .iter()
        .map(|(_, w)| w.join(", ").len())
        .max()
        .unwrap_or(0)
        .min(48);
    for (line, who) in &blame {
        println!("{:>width$} | {line}", who.join(", "));
    }
    Ok(())
}

/// For each line: the definitions without which it would not be there.
fn blame_lines(
    opts: &EvalOptions,
    config: &Config,
    path: &str,
    text: &str,
) -> Vec<(String, Vec<String>)> {
    let mut who: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for def in config
        .definitions
        .iter()
        .filter(|d| d.set.priority != Priority::OptionDefault)
    {
        let without = EvalOptions {
            profile: opts.profile.clone(),
            module_dirs: opts.module_dirs.clone(),
            without: Some(def.id),
        };
        let Ok(other) = evaluate(&without) else {
            continue;
        };
        let Ok(r) = render(&other) else { continue };
        let alt = match r.entries.get(path).map(|e| &e.kind) {
            Some(Kind::File(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        let alt_lines: std::collections::HashSet<&str> = alt.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if !alt_lines.contains(l) {
                who.entry(i).or_default().push(format!(
                    "{} {}",
                    def.set.origin,
                    short_site(&def.set.option_site)
                ));
            }
        }
    }
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| (l.to_string(), who.remove(&i).unwrap_or_default()))
        .collect()
}

fn short_site(site: &crate::source::Site) -> String {
    let (line, _) = site.file.line_col(site.span.start);
    format!("(line {line})")
}
