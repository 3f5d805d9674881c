//! Evaluation, like NixOS' module system: resolve imports, collect every
//! definition of every option, render templated values to a fixpoint, merge by
//! priority, check types, run cross-module assertions.
//! Depends on `model`; knows nothing about files on disk beyond reading modules.
// Input-derived data is never unwrapped or indexed blindly (issue 8): enforced here,
// not crate-wide, because image/ and vmtest/ are checked by their owners.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]
mod merge;
mod recursion;
mod refs;
mod resolve;
mod tmpl;

use crate::diag::Located;
use crate::model::module::{CheckKind, Module, Priority, SetDef};
use crate::model::profile::{Profile, load_profile};
use crate::model::raw::Raw;
use crate::model::types::did_you_mean;
use crate::source::Site;
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use recursion::find_cycle as template_cycle;
pub use tmpl::{
    context_for, engine, error_chain as tmpl_error, recursion_message as tmpl_recursion,
    render_str, truthy,
};

pub const CODE_UNKNOWN: &str = "hardroot::unknown-option";
pub const CODE_TYPE: &str = "hardroot::type";
pub const CODE_CONFLICT: &str = "hardroot::conflict";
pub const CODE_TEMPLATE: &str = "hardroot::template";
pub const CODE_ASSERT: &str = "hardroot::assertion";
pub const CODE_MISSING: &str = "hardroot::missing-value";
pub const CODE_CYCLE: &str = "hardroot::cycle";

/// Fixpoint rounds before we call it a cycle; real profiles settle in 3–4.
const MAX_ROUNDS: usize = 16;

/// One definition of one option, wherever it came from.
#[derive(Debug, Clone)]
pub struct Definition {
    pub id: usize,
    pub set: SetDef,
}

/// Where a final value came from.
#[derive(Debug, Clone)]
pub struct Origin {
    pub definition: usize,
    pub origin: String,
    pub site: Site,
    pub priority: Priority,
}

#[derive(Debug, Clone)]
pub struct OptionValue {
    pub value: Json,
    /// The definitions that won (all of them for a list, which concatenates).
    pub origins: Vec<Origin>,
}

/// The evaluated machine: every module and the final value of every option.
#[derive(Debug)]
pub struct Config {
    pub profile: Profile,
    pub modules: Vec<Module>,
    pub definitions: Vec<Definition>,
    pub values: BTreeMap<String, BTreeMap<String, OptionValue>>,
    pub warnings: Vec<Located>,
}

impl Config {
    /// The whole configuration as JSON: `{ "<module>": { "<option>": value } }`.
    pub fn json(&self) -> Json {
        values_json(&self.values)
    }

    pub fn module(&self, name: &str) -> Option<&Module> {
        self.modules.iter().find(|m| m.name == name)
    }

    pub fn option(&self, dotted: &str) -> Option<&OptionValue> {
        let (m, o) = dotted.split_once('.')?;
        self.values.get(m)?.get(o)
    }
}

pub struct EvalOptions {
    pub profile: PathBuf,
    pub module_dirs: Vec<PathBuf>,
    /// Leave one definition out (used by `explain` to see what it contributed).
    pub without: Option<usize>,
}

pub fn evaluate(opts: &EvalOptions) -> Result<Config, Vec<Located>> {
    let profile = load_profile(&opts.profile).map_err(|e| vec![e])?;
    let dirs = resolve::search_dirs(&profile, &opts.module_dirs);
    let modules = resolve::load_modules(&profile, &dirs).map_err(|e| vec![e])?;
    refs::check_modules(&modules).map_err(|e| vec![e])?;
    let definitions = collect(&profile, &modules).map_err(|e| vec![e])?;
    let active: Vec<&Definition> = definitions
        .iter()
        .filter(|d| Some(d.id) != opts.without)
        .collect();
    let values = fixpoint(&profile, &modules, &active)?;
    let mut config = Config {
        profile,
        modules,
        definitions: Vec::new(),
        values,
        warnings: Vec::new(),
    };
    config.definitions = definitions;
    let (failures, warnings) = run_checks(&config);
    if !failures.is_empty() {
        return Err(failures);
    }
    config.warnings = warnings;
    Ok(config)
}

pub fn evaluate_path(profile: &Path, module_dirs: &[PathBuf]) -> Result<Config, Vec<Located>> {
    evaluate(&EvalOptions {
        profile: profile.to_path_buf(),
        module_dirs: module_dirs.to_vec(),
        without: None,
    })
}

/// Option defaults, then module `[[set]]`s in module order, then profile values.
fn collect(profile: &Profile, modules: &[Module]) -> Result<Vec<Definition>, Located> {
    let mut sets = Vec::new();
    for m in modules {
        for decl in m.options.values() {
            if let Some(default) = &decl.default {
                sets.push(SetDef {
                    module: m.name.clone(),
                    origin: format!("module {} (default)", m.name),
                    option: format!("{}.{}", m.name, decl.name),
                    option_site: default.site().clone(),
                    value: default.clone(),
                    priority: Priority::OptionDefault,
                    when: None,
                });
            }
        }
        sets.extend(m.sets.iter().cloned());
    }
    sets.extend(profile.definitions.iter().cloned());
    for set in &sets {
        check_target(set, modules)?;
    }
    Ok(sets
        .into_iter()
        .enumerate()
        .map(|(id, set)| Definition { id, set })
        .collect())
}

fn check_target(set: &SetDef, modules: &[Module]) -> Result<(), Located> {
    let (module, option) = set.option.split_once('.').unwrap_or((&set.option, ""));
    let Some(m) = modules.iter().find(|m| m.name == module) else {
        let names: Vec<String> = modules.iter().map(|m| m.name.clone()).collect();
        return Err(Located::new(
            CODE_UNKNOWN,
            &set.option_site,
            format!(
                "`{module}` is not an imported module{}",
                did_you_mean(module, &names)
            ),
        )
        .label("unknown module")
        .help(if names.is_empty() {
            format!("no module is imported; add \"{module}\" to [profile] imports")
        } else {
            format!(
                "imported modules: {}; add \"{module}\" to [profile] imports",
                names.join(", ")
            )
        }));
    };
    if !m.options.contains_key(option) {
        let names: Vec<String> = m.options.keys().cloned().collect();
        return Err(Located::new(
            CODE_UNKNOWN,
            &set.option_site,
            format!(
                "module `{module}` has no option `{option}`{}",
                did_you_mean(option, &names)
            ),
        )
        .label("unknown option")
        .help(format!(
            "`hardroot options` lists them; {module} has: {}",
            names.join(", ")
        )));
    }
    Ok(())
}

static EMPTY: std::sync::LazyLock<tera::Context> = std::sync::LazyLock::new(tera::Context::new);

type Values = BTreeMap<String, BTreeMap<String, OptionValue>>;

fn fixpoint(
    profile: &Profile,
    modules: &[Module],
    defs: &[&Definition],
) -> Result<Values, Vec<Located>> {
    let mut values: Values = modules
        .iter()
        .map(|m| (m.name.clone(), BTreeMap::new()))
        .collect();
    for _ in 0..MAX_ROUNDS {
        let next = round(profile, modules, defs, &values, false)?;
        if same(&next, &values) {
            let strict = round(profile, modules, defs, &values, true)?;
            require_all(modules, &strict).map_err(|e| vec![e])?;
            return Ok(strict);
        }
        values = next;
    }
    let next = round(profile, modules, defs, &values, false)?;
    let moving: Vec<String> = changed(&values, &next);
    // Point at a templated definition of an option that keeps changing: that is where the loop is.
    let site = defs
        .iter()
        .filter(|d| moving.contains(&d.set.option))
        .max_by_key(|d| (d.set.value.has_template(), d.set.priority))
        .or(defs.first())
        .map(|d| d.set.option_site.clone())
        .or_else(|| profile.files.first().map(|f| Site::new(f, None)));
    let Some(site) = site else {
        return Err(Vec::new());
    };
    Err(vec![
        Located::new(
            CODE_CYCLE,
            &site,
            format!(
                "option values do not settle; these keep changing: {}",
                moving.join(", ")
            ),
        )
        .help("a templated value depends on itself, directly or through other options"),
    ])
}

fn same(a: &Values, b: &Values) -> bool {
    values_json(a) == values_json(b)
}

fn changed(a: &Values, b: &Values) -> Vec<String> {
    let mut out = Vec::new();
    for (m, opts) in b {
        for (o, v) in opts {
            if a.get(m).and_then(|x| x.get(o)).map(|x| &x.value) != Some(&v.value) {
                out.push(format!("{m}.{o}"));
            }
        }
    }
    out
}

fn values_json(values: &Values) -> Json {
    let mut top = Map::new();
    for (m, opts) in values {
        let inner: Map<String, Json> = opts
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect();
        top.insert(m.clone(), Json::Object(inner));
    }
    Json::Object(top)
}

/// One pass: render every definition against the previous values, check, merge.
/// Not strict: a definition whose templates cannot render yet waits for a later round.
fn round(
    profile: &Profile,
    modules: &[Module],
    defs: &[&Definition],
    prev: &Values,
    strict: bool,
) -> Result<Values, Vec<Located>> {
    let json = values_json(prev);
    let mut by_option: BTreeMap<&str, Vec<(Json, Origin)>> = BTreeMap::new();
    // One context per module, not per definition: building one copies the whole config.
    let mut contexts: BTreeMap<&str, tera::Context> = BTreeMap::new();
    for def in defs {
        let needs_context = def.set.value.has_template() || def.set.when.is_some();
        let ctx = if needs_context {
            &*contexts
                .entry(&def.set.module)
                .or_insert_with(|| context_for(&json, &def.set.module, &profile.name))
        } else {
            &EMPTY
        };
        match resolve_definition(def, modules, ctx) {
            Ok(Some(v)) => by_option
                .entry(def.set.option.as_str())
                .or_default()
                .push((v, origin(def))),
            Ok(None) => {}
            Err(e) if strict || !def.set.value.has_template() && def.set.when.is_none() => {
                return Err(vec![e]);
            }
            Err(_) => {}
        }
    }
    let mut out: Values = modules
        .iter()
        .map(|m| (m.name.clone(), BTreeMap::new()))
        .collect();
    let mut errors = Vec::new();
    for (option, defs) in by_option {
        let Some((m, o)) = option.split_once('.') else {
            continue;
        };
        let Some(decl) = modules
            .iter()
            .find(|x| x.name == m)
            .and_then(|x| x.options.get(o))
        else {
            continue;
        };
        match merge::merge(decl, defs) {
            Ok(v) => {
                out.entry(m.to_string())
                    .or_default()
                    .insert(o.to_string(), v);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn origin(def: &Definition) -> Origin {
    Origin {
        definition: def.id,
        origin: def.set.origin.clone(),
        site: def.set.option_site.clone(),
        priority: def.set.priority,
    }
}

/// The definition's value, rendered and type-checked; None when its `when` is false.
fn resolve_definition(
    def: &Definition,
    modules: &[Module],
    ctx: &tera::Context,
) -> Result<Option<Json>, Located> {
    let when = match &def.set.when {
        None => true,
        Some(w) => truthy(w, ctx).map_err(|e| {
            Located::new(
                CODE_TEMPLATE,
                &def.set.option_site,
                format!("`when` condition failed: {e}"),
            )
        })?,
    };
    if !when {
        return Ok(None);
    }
    let raw: Raw = if def.set.value.has_template() {
        def.set
            .value
            .map_strings(&mut |s, site| tmpl::render_value(s, ctx, site))
            .map_err(|e| {
                // Name the option: the site alone does not say which one a list entry belongs to.
                Located::new(
                    e.code,
                    &e.site,
                    format!("{}: {}", def.set.option, e.message),
                )
                .label(e.label.clone())
            })?
    } else {
        def.set.value.clone()
    };
    let (m, o) = def.set.option.split_once('.').unwrap_or_default();
    let decl = modules
        .iter()
        .find(|x| x.name == m)
        .and_then(|x| x.options.get(o));
    let Some(decl) = decl else { return Ok(None) };
    decl.ty.check(&raw).map(Some).map_err(|e| {
        Located::new(CODE_TYPE, &e.site, format!("{}.{}: {}", m, o, e.message))
            .label(format!("expected {}", e.expected))
            .help(format!(
                "{}.{} is declared at {}: {}",
                m, o, decl.site, decl.description
            ))
    })
}

/// Options nobody gave a value (no default, no definition) are an error, like NixOS' "used but not defined".
fn require_all(modules: &[Module], values: &Values) -> Result<(), Located> {
    for m in modules {
        for (name, decl) in &m.options {
            if values.get(&m.name).is_none_or(|v| !v.contains_key(name)) {
                return Err(Located::new(
                    CODE_MISSING,
                    &decl.site,
                    format!("option `{}.{}` has no value", m.name, name),
                )
                .label("declared here without a default")
                .help(format!(
                    "set it in the profile: [{}] {} = ...",
                    m.name, name
                )));
            }
        }
    }
    Ok(())
}

/// Assertions fail the build; warnings are returned for the CLI to print.
fn run_checks(config: &Config) -> (Vec<Located>, Vec<Located>) {
    let json = config.json();
    let mut failures = Vec::new();
    let mut warnings = Vec::new();
    for m in &config.modules {
        let ctx = context_for(&json, &m.name, &config.profile.name);
        for check in &m.assertions {
            failures.extend(run_check(check, &ctx, CODE_ASSERT, &m.name));
        }
        for check in &m.warnings {
            warnings.extend(run_check(check, &ctx, "hardroot::warning", &m.name));
        }
    }
    (failures, warnings)
}

fn run_check(
    check: &crate::model::module::Check,
    ctx: &tera::Context,
    code: &'static str,
    module: &str,
) -> Vec<Located> {
    let kind = if code == CODE_ASSERT {
        "assertion"
    } else {
        "warning"
    };
    let messages = match &check.kind {
        CheckKind::Assert { expr, message } => match truthy(expr, ctx) {
            Ok(true) => Vec::new(),
            Ok(false) => vec![message.clone()],
            Err(e) => vec![format!("cannot evaluate: {e}")],
        },
        CheckKind::Template(text) => match tmpl::render_str(text, ctx) {
            Ok(out) => out
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
            Err(e) => vec![format!("cannot evaluate: {e}")],
        },
    };
    messages
        .into_iter()
        .map(|msg| {
            Located::new(code, &check.site, format!("{module}: {kind} failed: {msg}"))
                .label(format!("{kind} declared here"))
        })
        .collect()
}
