//! `modules/<name>/module.toml`: options, rendered files, units, packages,
//! checks, and values set on other modules.
use super::raw::Raw;
use super::reader::{CODE_SCHEMA, Reader, parse_toml};
use super::types::{BASE_TYPES, Field, Type};
use crate::diag::Located;
use crate::source::{Site, Source, SourceFile};
use regex::Regex;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml_edit::Table;

#[derive(Debug)]
pub struct Module {
    pub name: String,
    pub dir: PathBuf,
    pub file: Source,
    pub description: String,
    pub imports: Vec<(String, Site)>,
    pub packages: Vec<Conditional<String>>,
    /// Paths deleted from the base before the overlay goes on (keys a package
    /// baked in, a default site we replace): "removal of what the profile disables".
    pub remove: Vec<Conditional<String>>,
    pub options: BTreeMap<String, OptionDecl>,
    pub sets: Vec<SetDef>,
    pub files: Vec<FileDef>,
    pub dirs: Vec<FileDef>,
    pub symlinks: Vec<LinkDef>,
    pub enable: Vec<Conditional<UnitRef>>,
    pub mask: Vec<Conditional<String>>,
    pub disable: Vec<Conditional<String>>,
    pub assertions: Vec<Check>,
    pub warnings: Vec<Check>,
}

#[derive(Debug, Clone)]
pub struct OptionDecl {
    pub module: String,
    pub name: String,
    pub ty: Type,
    pub default: Option<Raw>,
    pub description: String,
    pub example: Option<Json>,
    pub site: Site,
}

/// Anything a module declares that may depend on a Tera condition.
#[derive(Debug, Clone)]
pub struct Conditional<T> {
    pub item: T,
    pub when: Option<String>,
    pub site: Site,
}

#[derive(Debug, Clone)]
pub struct UnitRef {
    pub unit: String,
    pub wanted_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    OptionDefault = 0,
    Default = 1,
    Set = 2,
    Profile = 3,
    Force = 4,
}

#[derive(Debug, Clone)]
pub struct SetDef {
    /// Whose `cfg` templates in the value see: the defining module, or for profiles the target module.
    pub module: String,
    /// Who made the definition, for `explain`: "module ssh", "profile xmpp-test".
    pub origin: String,
    pub option: String,
    pub option_site: Site,
    pub value: Raw,
    pub priority: Priority,
    pub when: Option<String>,
}

#[derive(Debug, Clone)]
pub struct FileDef {
    pub target: String,
    pub target_site: Site,
    /// Template path relative to the module folder (files only).
    pub template: Option<String>,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    pub when: Option<String>,
    pub early: bool,
    /// A list option ("cfg.units", "<module>.<option>"): the file is rendered once
    /// per item, with `item` in the context of its template and of its target.
    pub for_each: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LinkDef {
    pub target: String,
    pub target_site: Site,
    pub points_to: String,
    pub when: Option<String>,
}

#[derive(Debug, Clone)]
pub enum CheckKind {
    /// A Tera boolean expression and the message shown when it is false.
    Assert { expr: String, message: String },
    /// A Tera template; every non-empty output line is one failure.
    Template(String),
}

#[derive(Debug, Clone)]
pub struct Check {
    pub kind: CheckKind,
    pub site: Site,
}

pub fn valid_module_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 64
}

pub fn load_module(name: &str, dir: &Path) -> Result<Module, Located> {
    let path = dir.join("module.toml");
    let text = read_text(&path)?;
    let file = SourceFile::new(&path, text);
    let doc = parse_toml(&file)?;
    let mut top = Reader::new(doc.as_table(), &file, format!("module `{name}`"));
    let head = top.table("module")?.ok_or_else(|| {
        Located::new(
            CODE_SCHEMA,
            &top.site(),
            "module.toml needs a [module] table",
        )
        .help("add [module] with a description")
    })?;
    let mut m = Module {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        file: file.clone(),
        description: String::new(),
        imports: Vec::new(),
        packages: Vec::new(),
        remove: Vec::new(),
        options: BTreeMap::new(),
        sets: Vec::new(),
        files: Vec::new(),
        dirs: Vec::new(),
        symlinks: Vec::new(),
        enable: Vec::new(),
        mask: Vec::new(),
        disable: Vec::new(),
        assertions: Vec::new(),
        warnings: Vec::new(),
    };
    read_head(&mut m, head, &file)?;
    if let Some(opts) = top.table("options")? {
        for (opt, item) in opts.iter() {
            let t = item.as_table().ok_or_else(|| {
                Located::new(
                    CODE_SCHEMA,
                    &Site::new(&file, item.span()),
                    format!("option `{opt}` must be a table [options.{opt}]"),
                )
            })?;
            let decl = read_option(name, opt, t, &file)?;
            m.options.insert(opt.to_string(), decl);
        }
    }
    for t in top.tables("set")? {
        m.sets.push(read_set(name, &t, &file)?);
    }
    for t in top.tables("files")? {
        m.files.push(read_file_def(&t, &file, true)?);
    }
    for t in top.tables("dirs")? {
        m.dirs.push(read_file_def(&t, &file, false)?);
    }
    for t in top.tables("symlinks")? {
        m.symlinks.push(read_link(&t, &file)?);
    }
    if let Some(units) = top.table("units")? {
        read_units(&mut m, units, &file)?;
    }
    for t in top.tables("assertions")? {
        m.assertions.push(read_check(&t, &file, "[[assertions]]")?);
    }
    for t in top.tables("warnings")? {
        m.warnings.push(read_check(&t, &file, "[[warnings]]")?);
    }
    top.finish()?;
    Ok(m)
}

/// Profiles, module.toml files and templates are written by hand; anything
/// larger than this is a mistake (or an attack) and would only make every later
/// step slow. A 10 MB profile took 50 s to evaluate before this limit.
pub const MAX_INPUT_BYTES: u64 = 1 << 20;

pub fn read_text(path: &Path) -> Result<String, Located> {
    let bytes = read_limited(path)?;
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
        let file = SourceFile::new(path, lossy);
        Located::new(
            "hardroot::utf8",
            &Site::new(&file, Some(offset..offset + 1)),
            "file is not valid UTF-8",
        )
        .label("invalid byte")
        .help("save the file as UTF-8")
    })
}

/// Reads a regular file of at most MAX_INPUT_BYTES (a FIFO or a device would block or never end).
pub fn read_limited(path: &Path) -> Result<Vec<u8>, Located> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| io_error(path, &e))?;
    let meta = file.metadata().map_err(|e| io_error(path, &e))?;
    if !meta.is_file() {
        return Err(
            input_error(path, "hardroot::io", "is not a regular file".into())
                .help("profiles, module.toml files and templates must be plain files"),
        );
    }
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, &e))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(input_error(
            path,
            "hardroot::too-large",
            format!(
                "is {} bytes; input files may be at most {MAX_INPUT_BYTES} bytes (1 MiB)",
                meta.len().max(MAX_INPUT_BYTES + 1)
            ),
        )
        .help("profiles and modules are written by hand; split a generated one, or keep data out of it"));
    }
    Ok(bytes)
}

fn input_error(path: &Path, code: &'static str, what: String) -> Located {
    let file = SourceFile::new(path, String::new());
    Located::new(
        code,
        &Site::new(&file, None),
        format!("{} {what}", file.name),
    )
}

pub fn io_error(path: &Path, e: &std::io::Error) -> Located {
    let file = SourceFile::new(path, String::new());
    Located::new(
        "hardroot::io",
        &Site::new(&file, None),
        format!("cannot read {}: {e}", file.name),
    )
}

fn read_head(m: &mut Module, head: &Table, file: &Source) -> Result<(), Located> {
    let mut r = Reader::new(head, file, "[module]");
    m.description = r.string("description")?.map(|s| s.0).unwrap_or_default();
    if let Some(raw) = r.raw("imports") {
        m.imports = string_list(&r, &raw, "imports")?;
    }
    if let Some(raw) = r.raw("packages") {
        m.packages = conditional_list(&r, &raw, "packages", "name", unit_or_package_name)?
            .into_iter()
            .map(|(c, _)| c)
            .collect();
    }
    if let Some(raw) = r.raw("remove") {
        m.remove = conditional_list(&r, &raw, "remove", "path", |p| {
            p.starts_with('/') && !p.chars().any(char::is_control)
        })?
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    }
    r.finish()
}

fn string_list(r: &Reader, raw: &Raw, key: &str) -> Result<Vec<(String, Site)>, Located> {
    let Raw::List(items, _) = raw else {
        return Err(r.expected(raw, &format!("`{key}` to be a list of strings")));
    };
    items
        .iter()
        .map(|i| {
            i.as_str()
                .map(|s| (s.to_string(), i.site().clone()))
                .ok_or_else(|| r.expected(i, "a string"))
        })
        .collect()
}

/// An entry of a name list and its `wanted_by` (units only).
type Named = (Conditional<String>, Option<String>);

/// A list whose entries are "name" or { <key> = "name", when = "...", ...extra }.
fn conditional_list(
    r: &Reader,
    raw: &Raw,
    what: &str,
    key: &str,
    valid: fn(&str) -> bool,
) -> Result<Vec<Named>, Located> {
    let Raw::List(items, _) = raw else {
        return Err(r.expected(raw, &format!("`{what}` to be a list")));
    };
    let mut out = Vec::new();
    for item in items {
        let (name, when, extra) = match item {
            Raw::Scalar(Json::String(s), _) => (s.clone(), None, None),
            Raw::Table(fields, _) => {
                for (k, ks, _) in fields {
                    if k != key && k != "when" && k != "wanted_by" {
                        return Err(Located::new(CODE_SCHEMA, ks, format!("unknown key `{k}` in a `{what}` entry"))
                            .help(format!("entries are \"name\" or {{ {key} = \"name\", when = \"<tera expression>\" }}")));
                    }
                }
                let name = item
                    .field(key)
                    .and_then(Raw::as_str)
                    .ok_or_else(|| r.expected(item, &format!("`{key}`")))?;
                let when = item.field("when").and_then(Raw::as_str).map(str::to_string);
                let extra = item
                    .field("wanted_by")
                    .and_then(Raw::as_str)
                    .map(str::to_string);
                (name.to_string(), when, extra)
            }
            other => return Err(r.expected(other, &format!("a string or a table in `{what}`"))),
        };
        if !valid(&name) {
            return Err(Located::new(
                CODE_SCHEMA,
                item.site(),
                format!("{:?} is not a valid name in `{what}`", name),
            ));
        }
        out.push((
            Conditional {
                item: name,
                when,
                site: item.site().clone(),
            },
            extra,
        ));
    }
    Ok(out)
}

fn unit_or_package_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 256
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@+-:\\".contains(c))
}

fn read_units(m: &mut Module, units: &Table, file: &Source) -> Result<(), Located> {
    let mut r = Reader::new(units, file, "[units]");
    if let Some(raw) = r.raw("enable") {
        m.enable = conditional_list(&r, &raw, "enable", "unit", unit_or_package_name)?
            .into_iter()
            .map(|(c, wanted_by)| Conditional {
                item: UnitRef {
                    unit: c.item,
                    wanted_by,
                },
                when: c.when,
                site: c.site,
            })
            .collect();
    }
    if let Some(raw) = r.raw("mask") {
        m.mask = conditional_list(&r, &raw, "mask", "unit", unit_or_package_name)?
            .into_iter()
            .map(|(c, _)| c)
            .collect();
    }
    if let Some(raw) = r.raw("disable") {
        m.disable = conditional_list(&r, &raw, "disable", "unit", unit_or_package_name)?
            .into_iter()
            .map(|(c, _)| c)
            .collect();
    }
    r.finish()
}

fn read_option(module: &str, name: &str, t: &Table, file: &Source) -> Result<OptionDecl, Located> {
    let field = read_field(t, file, &format!("option `{module}.{name}`"))?;
    let mut r = Reader::new(t, file, "");
    let site = r.site();
    let example = r.raw("example").map(|e| e.to_json());
    if field.description.is_empty() {
        return Err(Located::new(
            CODE_SCHEMA,
            &site,
            format!("option `{module}.{name}` needs a description"),
        )
        .help("every option documents itself: add description = \"...\""));
    }
    Ok(OptionDecl {
        module: module.to_string(),
        name: name.to_string(),
        ty: field.ty,
        default: field.default,
        description: field.description,
        example,
        site: Site::new(file, t.key(name).and_then(|k| k.span()).or(t.span())),
    })
}

/// type/default/description/values/pattern/min/max/fields: shared by options and record fields.
fn read_field(t: &Table, file: &Source, what: &str) -> Result<Field, Located> {
    let mut r = Reader::new(t, file, what);
    let (type_name, type_site) = r.required_string("type")?;
    let default = r.raw("default");
    let description = r.string("description")?.map(|s| s.0).unwrap_or_default();
    let _ = r.raw("example");
    let ty = read_type(&mut r, &type_name, &type_site, what)?;
    r.finish()?;
    Ok(Field {
        ty,
        default,
        description,
    })
}

const MAX_TYPE_DEPTH: usize = 8;

fn read_type(r: &mut Reader, name: &str, site: &Site, what: &str) -> Result<Type, Located> {
    let mut words: Vec<&str> = name.split_whitespace().collect();
    // Nested types recurse when checked, named and dropped; no real option needs more than a few.
    if words.len() > 2 * MAX_TYPE_DEPTH + 1 {
        return Err(Located::new(
            CODE_SCHEMA,
            site,
            format!("type `{}` nests too deeply", super::types::quoted(name)),
        )
        .help(format!(
            "at most {MAX_TYPE_DEPTH} `list of` / `table of` levels"
        )));
    }
    let base = words.pop().unwrap_or("");
    let mut ty = match base {
        "bool" => Type::Bool,
        "int" => Type::Int {
            min: int_key(r, "min")?,
            max: int_key(r, "max")?,
        },
        "port" => Type::Port,
        "string" => Type::Str {
            pattern: pattern_key(r)?,
        },
        "text" => Type::Text,
        "shell" => Type::Shell,
        "token" => Type::Token,
        "hostname" => Type::Hostname,
        "ipv4" => Type::Ipv4,
        "ipv6" => Type::Ipv6,
        "ip" => Type::Ip,
        "cidr" => Type::Cidr,
        "cidr4" => Type::Cidr4,
        "cidr6" => Type::Cidr6,
        "path" => Type::Path,
        "enum" => Type::Enum(enum_values(r)?),
        "record" => Type::Record(record_fields(r, what)?),
        other => {
            let known: Vec<String> = BASE_TYPES.iter().map(|s| s.to_string()).collect();
            return Err(Located::new(
                CODE_SCHEMA,
                site,
                format!(
                    "unknown type `{other}`{}",
                    super::types::did_you_mean(other, &known)
                ),
            )
            .help(format!(
                "types: {}, `list of T`, `table of T`",
                BASE_TYPES.join(", ")
            )));
        }
    };
    while let Some(of) = words.pop() {
        ty = match (words.pop(), of) {
            (Some("list"), "of") => Type::List(Box::new(ty)),
            (Some("table"), "of") => Type::Table(Box::new(ty)),
            _ => {
                return Err(
                    Located::new(CODE_SCHEMA, site, format!("cannot read type `{name}`"))
                        .help("write e.g. \"list of port\" or \"table of string\""),
                );
            }
        };
    }
    Ok(ty)
}

fn int_key(r: &mut Reader, key: &str) -> Result<Option<i64>, Located> {
    match r.raw(key) {
        None => Ok(None),
        Some(Raw::Scalar(Json::Number(n), site)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| Located::new(CODE_SCHEMA, &site, format!("`{key}` must be an integer"))),
        Some(raw) => Err(r.expected(&raw, &format!("`{key}` to be an integer"))),
    }
}

fn pattern_key(r: &mut Reader) -> Result<Option<Regex>, Located> {
    let Some((p, site)) = r.string("pattern")? else {
        return Ok(None);
    };
    Regex::new(&p)
        .map(Some)
        .map_err(|e| Located::new(CODE_SCHEMA, &site, format!("invalid pattern: {e}")))
}

fn enum_values(r: &mut Reader) -> Result<Vec<String>, Located> {
    let site = r.site();
    let raw = r
        .raw("values")
        .ok_or_else(|| Located::new(CODE_SCHEMA, &site, "an enum needs `values = [...]`"))?;
    let values = string_list(r, &raw, "values")?;
    Ok(values.into_iter().map(|v| v.0).collect())
}

fn record_fields(r: &mut Reader, what: &str) -> Result<BTreeMap<String, Field>, Located> {
    let site = r.site();
    let fields = r.table("fields")?.ok_or_else(|| {
        Located::new(
            CODE_SCHEMA,
            &site,
            "a record needs [options.<name>.fields.<field>] tables",
        )
    })?;
    let mut out = BTreeMap::new();
    for (name, item) in fields.iter() {
        let table = match item {
            toml_edit::Item::Table(t) => t.clone(),
            toml_edit::Item::Value(toml_edit::Value::InlineTable(t)) => t.clone().into_table(),
            _ => {
                let site = Site::new(r.file, item.span());
                return Err(Located::new(
                    CODE_SCHEMA,
                    &site,
                    format!("field `{name}` must be a table"),
                ));
            }
        };
        let field = read_field(&table, r.file, &format!("{what} field `{name}`"))?;
        out.insert(name.to_string(), field);
    }
    Ok(out)
}

fn read_set(module: &str, t: &Table, file: &Source) -> Result<SetDef, Located> {
    let mut r = Reader::new(t, file, "[[set]] entry");
    let (option, option_site) = r.required_string("option")?;
    let site = r.site();
    let value = r
        .raw("value")
        .ok_or_else(|| Located::new(CODE_SCHEMA, &site, "[[set]] needs `value`"))?;
    let priority = match r.string("priority")? {
        None => Priority::Set,
        Some((p, _)) if p == "set" => Priority::Set,
        Some((p, _)) if p == "default" => Priority::Default,
        Some((p, _)) if p == "force" => Priority::Force,
        Some((p, s)) => {
            return Err(
                Located::new(CODE_SCHEMA, &s, format!("unknown priority `{p}`"))
                    .help("use \"default\", \"set\" or \"force\""),
            );
        }
    };
    let when = r.string("when")?.map(|w| w.0);
    r.finish()?;
    Ok(SetDef {
        module: module.to_string(),
        origin: format!("module {module}"),
        option,
        option_site,
        value,
        priority,
        when,
    })
}

fn read_file_def(t: &Table, file: &Source, is_file: bool) -> Result<FileDef, Located> {
    let mut r = Reader::new(
        t,
        file,
        if is_file {
            "[[files]] entry"
        } else {
            "[[dirs]] entry"
        },
    );
    let (target, target_site) = r.required_string("target")?;
    let template = if is_file {
        Some(r.required_string("template")?.0)
    } else {
        None
    };
    let default_mode = if is_file { 0o644 } else { 0o755 };
    let mode = match r.string("mode")? {
        None => default_mode,
        Some((m, site)) => parse_mode(&m).ok_or_else(|| {
            Located::new(
                CODE_SCHEMA,
                &site,
                format!("mode {m:?} is not an octal file mode"),
            )
            .help("write it like \"0644\"")
        })?,
    };
    let owner = r
        .string("owner")?
        .map_or_else(|| "root".to_string(), |o| o.0);
    let group = r
        .string("group")?
        .map_or_else(|| "root".to_string(), |o| o.0);
    let when = r.string("when")?.map(|w| w.0);
    let early = is_file && r.bool("early")?;
    let for_each = if is_file {
        r.string("for_each")?.map(|f| f.0)
    } else {
        None
    };
    for (who, site) in [(&owner, r.key_site("owner")), (&group, r.key_site("group"))] {
        if !valid_account(who) {
            return Err(Located::new(
                CODE_SCHEMA,
                &site,
                format!("{who:?} is not a user or group name or number"),
            ));
        }
    }
    r.finish()?;
    Ok(FileDef {
        target,
        target_site,
        template,
        mode,
        owner,
        group,
        when,
        early,
        for_each,
    })
}

fn parse_mode(m: &str) -> Option<u32> {
    u32::from_str_radix(m, 8).ok().filter(|m| *m <= 0o7777)
}

fn valid_account(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
}

fn read_link(t: &Table, file: &Source) -> Result<LinkDef, Located> {
    let mut r = Reader::new(t, file, "[[symlinks]] entry");
    let (target, target_site) = r.required_string("target")?;
    let (points_to, pt_site) = r.required_string("points_to")?;
    if points_to.is_empty() || points_to.chars().any(char::is_control) {
        return Err(Located::new(
            CODE_SCHEMA,
            &pt_site,
            "`points_to` must be a non-empty path without control characters",
        ));
    }
    let when = r.string("when")?.map(|w| w.0);
    r.finish()?;
    Ok(LinkDef {
        target,
        target_site,
        points_to,
        when,
    })
}

fn read_check(t: &Table, file: &Source, what: &str) -> Result<Check, Located> {
    let mut r = Reader::new(t, file, what);
    let site = r.site();
    let assert = r.string("assert")?;
    let message = r.string("message")?;
    let check = r.string("check")?;
    r.finish()?;
    let kind = match (assert, message, check) {
        (Some((expr, _)), Some((message, _)), None) => CheckKind::Assert { expr, message },
        (None, None, Some((text, _))) => CheckKind::Template(text),
        _ => {
            return Err(Located::new(CODE_SCHEMA, &site, format!("{what} needs either `assert` + `message`, or `check`"))
                .help("assert = \"<tera expression>\", message = \"...\"; or check = \"<template printing one failure per line>\""));
        }
    };
    Ok(Check { kind, site })
}
