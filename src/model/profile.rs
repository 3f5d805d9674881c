//! Profiles: whole machines. A profile imports modules (by name) and other
//! profiles (by path) and sets options; `[force.<module>]` wins over everything.
use super::module::{Priority, SetDef, read_text};
use super::raw::Raw;
use super::reader::{CODE_SCHEMA, Reader, parse_toml};
use crate::diag::Located;
use crate::source::{Site, Source, SourceFile};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct Profile {
    /// The top profile's name (file stem).
    pub name: String,
    pub path: PathBuf,
    pub description: String,
    /// `fragment = true` in the top file's [profile]: a part other profiles
    /// import (hardened.toml), not a machine; `image` with several profiles
    /// skips it. Not inherited: a profile importing a fragment is a machine.
    pub fragment: bool,
    /// Module imports in order of first appearance (depth-first through imported profiles).
    pub modules: Vec<(String, Site)>,
    /// Option definitions from every profile file, in import order.
    pub definitions: Vec<SetDef>,
    /// Every profile file read, top first.
    pub files: Vec<Source>,
}

pub fn load_profile(path: &Path) -> Result<Profile, Located> {
    let mut p = Profile {
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: path.to_path_buf(),
        description: String::new(),
        fragment: false,
        modules: Vec::new(),
        definitions: Vec::new(),
        files: Vec::new(),
    };
    let mut stack = Vec::new();
    read_profile(path, &mut p, &mut stack, None)?;
    Ok(p)
}

fn read_profile(
    path: &Path,
    p: &mut Profile,
    stack: &mut Vec<PathBuf>,
    from: Option<&Site>,
) -> Result<(), Located> {
    let canonical = std::fs::canonicalize(path).map_err(|e| match from {
        Some(site) => Located::new(
            "hardroot::import",
            site,
            format!(
                "cannot open imported profile {}: {e}",
                crate::source::display_path(path)
            ),
        ),
        None => super::module::io_error(path, &e),
    })?;
    if let Some(pos) = stack.iter().position(|s| *s == canonical) {
        let chain: Vec<String> = stack
            .iter()
            .skip(pos)
            .chain([&canonical])
            .map(|s| crate::source::display_path(s))
            .collect();
        let site = from
            .cloned()
            .unwrap_or_else(|| Site::new(&SourceFile::new(path, String::new()), None));
        return Err(Located::new(
            "hardroot::import-cycle",
            &site,
            format!("profile import cycle: {}", chain.join(" → ")),
        ));
    }
    if p.files.iter().any(|f| f.path == canonical) {
        return Ok(()); // imported twice through different paths: read once, like NixOS
    }
    let file = SourceFile::new(&canonical, read_text(&canonical)?);
    p.files.push(file.clone());
    stack.push(canonical.clone());
    let doc = parse_toml(&file)?;
    let name = canonical
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut top = Reader::new(doc.as_table(), &file, "the profile");
    if let Some(head) = top.table("profile")? {
        let mut r = Reader::new(head, &file, "[profile]");
        let description = r.string("description")?.map(|d| d.0).unwrap_or_default();
        if p.description.is_empty() {
            p.description = description;
        }
        let fragment = r.bool("fragment")?;
        if from.is_none() {
            p.fragment = fragment;
        }
        let imports = match r.raw("imports") {
            Some(raw) => import_list(&r, &raw)?,
            None => Vec::new(),
        };
        r.finish()?;
        for (import, site) in imports {
            if import.ends_with(".toml") {
                let dir = canonical.parent().unwrap_or(Path::new("."));
                read_profile(&dir.join(&import), p, stack, Some(&site))?;
            } else if !p.modules.iter().any(|(m, _)| *m == import) {
                p.modules.push((import, site));
            }
        }
    }
    for (key, item) in doc.as_table().iter() {
        match key {
            "profile" => {}
            "force" => {
                let t = top.table("force")?.into_iter().flat_map(|t| t.iter());
                for (module, item) in t {
                    definitions(
                        &file,
                        &name,
                        module,
                        item,
                        Priority::Force,
                        &mut p.definitions,
                    )?;
                }
            }
            module => definitions(
                &file,
                &name,
                module,
                item,
                Priority::Profile,
                &mut p.definitions,
            )?,
        }
    }
    stack.pop();
    Ok(())
}

fn import_list(r: &Reader, raw: &Raw) -> Result<Vec<(String, Site)>, Located> {
    let Raw::List(items, _) = raw else {
        return Err(r.expected(
            raw,
            "`imports` to be a list of module names or profile paths",
        ));
    };
    items
        .iter()
        .map(|i| {
            i.as_str()
                .map(|s| (s.to_string(), i.site().clone()))
                .ok_or_else(|| r.expected(i, "a module name or a profile path"))
        })
        .collect()
}

fn definitions(
    file: &Source,
    profile: &str,
    module: &str,
    item: &toml_edit::Item,
    priority: Priority,
    out: &mut Vec<SetDef>,
) -> Result<(), Located> {
    let table = item.as_table_like().ok_or_else(|| {
        Located::new(
            CODE_SCHEMA,
            &Site::new(file, item.span()),
            format!("`{module}` must be a table of options: [{module}]"),
        )
        .help("option values go under the module's table, e.g. [ssh] port = 22")
    })?;
    for (option, value) in table.iter() {
        let key_site = Site::new(file, table.key(option).and_then(|k| k.span()));
        let Some(value) = Raw::from_item(value, file) else {
            continue;
        };
        out.push(SetDef {
            module: module.to_string(),
            origin: format!("profile {profile}"),
            option: format!("{module}.{option}"),
            option_site: key_site,
            value,
            priority,
            when: None,
        });
    }
    Ok(())
}
