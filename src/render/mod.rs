//! Render: evaluated config → an in-memory tree of files, dirs and symlinks,
//! plus the package set and the unit lists. Nothing touches the disk here
//! except reading templates. Depends on `eval` and `model`.
// Input-derived data is never unwrapped or indexed blindly (issue 8): enforced here,
// not crate-wide, because image/ and vmtest/ are checked by their owners.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]
mod paths;
mod units;

use crate::diag::Located;
use crate::eval::{Config, context_for, engine, render_str, tmpl_error, truthy};
use crate::model::module::{Conditional, FileDef, Module};
use crate::source::Site;
use std::collections::BTreeMap;

pub use paths::normalize_target;

pub const CODE_RENDER: &str = "hardroot::render";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative to the root, no leading slash: "etc/ssh/sshd_config".
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    pub early: bool,
    /// Which module made it ("" for implicit parent folders).
    pub module: String,
    /// The template, as "modules/<name>/<file>".
    pub template: Option<String>,
    pub site: Option<Site>,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Units {
    pub enable: Vec<EnabledUnit>,
    pub mask: Vec<String>,
    pub disable: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct EnabledUnit {
    pub unit: String,
    pub wanted_by: String,
}

#[derive(Debug)]
pub struct Rendered {
    pub entries: BTreeMap<String, Entry>,
    pub packages: Vec<String>,
    pub units: Units,
    /// Absolute paths to delete from the base image, sorted.
    pub remove: Vec<String>,
}

pub fn render(config: &Config) -> Result<Rendered, Vec<Located>> {
    let json = config.json();
    let tera = load_templates(config).map_err(|e| vec![e])?;
    let mut tree = paths::Tree::default();
    let mut packages = Vec::new();
    let mut remove = Vec::new();
    let mut errors = Vec::new();
    for m in &config.modules {
        let ctx = context_for(&json, &m.name, &config.profile.name);
        let lists = Lists {
            packages: &mut packages,
            remove: &mut remove,
        };
        if let Err(e) = render_module(m, &tera, &ctx, &mut tree, lists) {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let units = units::apply(config, &json, &mut tree).map_err(|e| vec![e])?;
    let entries = tree.finish().map_err(|e| vec![e])?;
    packages.sort();
    packages.dedup();
    remove.sort();
    remove.dedup();
    Ok(Rendered {
        entries,
        packages,
        units,
        remove,
    })
}

/// What modules add up across the whole profile.
struct Lists<'a> {
    packages: &'a mut Vec<String>,
    remove: &'a mut Vec<String>,
}

fn render_module(
    m: &Module,
    tera: &tera::Tera,
    ctx: &tera::Context,
    tree: &mut paths::Tree,
    lists: Lists,
) -> Result<(), Located> {
    for p in &m.packages {
        if enabled(p, ctx)? {
            lists.packages.push(p.item.clone());
        }
    }
    for r in &m.remove {
        if enabled(r, ctx)? {
            let path = normalize_target(&r.item)
                .map_err(|e| Located::new(paths::CODE_PATH, &r.site, e))?;
            lists.remove.push(format!("/{path}"));
        }
    }
    for f in &m.files {
        if !when(&f.when, ctx, &f.target_site)? {
            continue;
        }
        let name = f
            .template
            .as_deref()
            .map(|t| template_name(&m.name, t))
            .unwrap_or_default();
        // A plain file once; a `for_each` file once per item of its list
        // option (a drop-in per supervised unit), with `item` in its
        // template and its target.
        let copies = match &f.for_each {
            None => vec![(f.target.clone(), None)],
            Some(list) => list_items(list, ctx, &f.target_site)?
                .into_iter()
                .map(|item| {
                    let mut item_ctx = ctx.clone();
                    item_ctx.insert("item", &item);
                    let target = render_str(&f.target, &item_ctx).map_err(|e| {
                        Located::new(
                            CODE_RENDER,
                            &f.target_site,
                            format!("target {:?} failed: {e}", f.target),
                        )
                    })?;
                    Ok((target, Some(item_ctx)))
                })
                .collect::<Result<_, Located>>()?,
        };
        for (target, item_ctx) in copies {
            let content = render_file(tera, &name, item_ctx.as_ref().unwrap_or(ctx), f)?;
            tree.add(
                f,
                &target,
                &m.name,
                paths::NewKind::File(content, format!("modules/{name}")),
            )?;
        }
    }
    for d in &m.dirs {
        if when(&d.when, ctx, &d.target_site)? {
            tree.add(d, &d.target, &m.name, paths::NewKind::Dir)?;
        }
    }
    for l in &m.symlinks {
        if when(&l.when, ctx, &l.target_site)? {
            tree.add_link(&l.target, &l.target_site, &l.points_to, &m.name)?;
        }
    }
    Ok(())
}

fn render_file(
    tera: &tera::Tera,
    name: &str,
    ctx: &tera::Context,
    f: &FileDef,
) -> Result<Vec<u8>, Located> {
    let content = tera.render(name, ctx).map_err(|e| {
        Located::new(
            CODE_RENDER,
            &f.target_site,
            format!("template {name} failed: {}", tmpl_error(&e)),
        )
        .label("rendering this file")
    })?;
    Ok(content.into_bytes())
}

/// The items of `for_each`'s list option (its name was checked when the modules were loaded).
fn list_items(
    list: &str,
    ctx: &tera::Context,
    site: &Site,
) -> Result<Vec<serde_json::Value>, Located> {
    let refused =
        |why: String| Located::new(CODE_RENDER, site, format!("for_each = {list:?}: {why}"));
    let json = render_str(&format!("{{{{ {list} | json_encode() }}}}"), ctx).map_err(refused)?;
    match serde_json::from_str(&json) {
        Ok(serde_json::Value::Array(items)) => Ok(items),
        _ => Err(refused("is not a list option".into())),
    }
}

pub fn enabled<T>(c: &Conditional<T>, ctx: &tera::Context) -> Result<bool, Located> {
    when(&c.when, ctx, &c.site)
}

fn when(cond: &Option<String>, ctx: &tera::Context, site: &Site) -> Result<bool, Located> {
    match cond {
        None => Ok(true),
        Some(expr) => truthy(expr, ctx)
            .map_err(|e| Located::new(CODE_RENDER, site, format!("`when` condition failed: {e}"))),
    }
}

fn template_name(module: &str, template: &str) -> String {
    format!("{module}/{template}")
}

/// All templates of all modules in one Tera, named "<module>/<file>", so a syntax
/// error is reported before anything renders.
fn load_templates(config: &Config) -> Result<tera::Tera, Located> {
    let mut sources = Vec::new();
    for m in &config.modules {
        for f in &m.files {
            let Some(t) = &f.template else { continue };
            let text = paths::read_template(m, t, &f.target_site)?;
            sources.push((template_name(&m.name, t), text, f.target_site.clone()));
        }
    }
    let mut tera = engine();
    for (name, text, site) in &sources {
        // Added one by one so that the error names the template at fault.
        tera.add_raw_template(name, text).map_err(|e| {
            Located::new(
                CODE_RENDER,
                site,
                format!("template {name} has a syntax error: {}", tmpl_error(&e)),
            )
            .label("template used here")
        })?;
    }
    if let Some(cycle) = crate::eval::template_cycle(&tera) {
        let site = sources
            .iter()
            .find(|(name, _, _)| cycle.starts_with(name.as_str()))
            .or(sources.first())
            .map(|(_, _, site)| site.clone());
        if let Some(site) = site {
            return Err(
                Located::new(CODE_RENDER, &site, crate::eval::tmpl_recursion(&cycle))
                    .label("template used here"),
            );
        }
    }
    Ok(tera)
}
