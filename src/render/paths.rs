//! The rendered tree: clean relative paths only, one owner per path, parents implied.
use super::{CODE_RENDER, Entry, Kind};
use crate::diag::Located;
use crate::model::module::{FileDef, Module};
use crate::source::Site;
use std::collections::BTreeMap;
use std::path::{Component, Path};

pub const CODE_PATH: &str = "hardroot::path";

/// "/etc/ssh/sshd_config" → "etc/ssh/sshd_config"; anything that could escape the root is refused.
pub fn normalize_target(target: &str) -> Result<String, String> {
    let Some(rest) = target.strip_prefix('/') else {
        return Err(format!(
            "{target:?} is not absolute: targets are paths in the image, like \"/etc/foo\""
        ));
    };
    if rest.is_empty() || target.len() > 4096 {
        return Err(format!("{target:?} is not a file path"));
    }
    for part in rest.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!(
                "{target:?} has an empty, `.` or `..` component: targets must stay inside the root"
            ));
        }
        if part.len() > 255 || part.chars().any(char::is_control) {
            return Err(format!(
                "{target:?} has a component with control characters or longer than 255 bytes"
            ));
        }
    }
    Ok(rest.to_string())
}

/// Reads a template, refusing paths that leave the module's folder (also through symlinks).
pub fn read_template(m: &Module, template: &str, site: &Site) -> Result<String, Located> {
    let rel = Path::new(template);
    if template.is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(Located::new(
            CODE_PATH,
            site,
            format!(
                "template path {template:?} must be relative to the module folder, without `..`"
            ),
        ));
    }
    let path = m.dir.join(rel);
    let real = std::fs::canonicalize(&path).map_err(|e| {
        Located::new(
            CODE_RENDER,
            site,
            format!(
                "template {} cannot be read: {e}",
                crate::source::display_path(&path)
            ),
        )
        .label("file declared here")
    })?;
    let root = std::fs::canonicalize(&m.dir).unwrap_or_else(|_| m.dir.clone());
    if !real.starts_with(&root) {
        return Err(Located::new(
            CODE_PATH,
            site,
            format!(
                "template {template} resolves outside the module folder ({})",
                real.display()
            ),
        ));
    }
    let bytes = crate::model::module::read_limited(&real)
        .map_err(|e| Located::new(e.code, site, format!("template {template}: {}", e.message)))?;
    String::from_utf8(bytes).map_err(|_| {
        Located::new(
            CODE_RENDER,
            site,
            format!("template {template} is not valid UTF-8"),
        )
    })
}

pub enum NewKind {
    File(Vec<u8>, String),
    Dir,
}

#[derive(Default)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

impl Tree {
    /// `target` is `def.target`, or for a `for_each` file the target rendered for one item.
    pub fn add(
        &mut self,
        def: &FileDef,
        target: &str,
        module: &str,
        kind: NewKind,
    ) -> Result<(), Located> {
        let path =
            normalize_target(target).map_err(|m| Located::new(CODE_PATH, &def.target_site, m))?;
        let (kind, template) = match kind {
            NewKind::File(bytes, template) => (Kind::File(bytes), Some(template)),
            NewKind::Dir => (Kind::Dir, None),
        };
        self.insert(Entry {
            path,
            kind,
            mode: def.mode,
            owner: def.owner.clone(),
            group: def.group.clone(),
            early: def.early,
            module: module.to_string(),
            template,
            site: Some(def.target_site.clone()),
        })
    }

    pub fn add_link(
        &mut self,
        target: &str,
        site: &Site,
        points_to: &str,
        module: &str,
    ) -> Result<(), Located> {
        let path = normalize_target(target).map_err(|m| Located::new(CODE_PATH, site, m))?;
        self.insert(Entry {
            path,
            kind: Kind::Symlink(points_to.to_string()),
            mode: 0o777,
            owner: "root".into(),
            group: "root".into(),
            early: false,
            module: module.to_string(),
            template: None,
            site: Some(site.clone()),
        })
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    fn insert(&mut self, entry: Entry) -> Result<(), Located> {
        if let Some(old) = self.entries.get(&entry.path) {
            let site = entry
                .site
                .clone()
                .unwrap_or_else(|| old.site.clone().unwrap_or_else(dummy_site));
            let mut err = Located::new(
                "hardroot::duplicate-target",
                &site,
                format!(
                    "/{} is made twice: by module {} and by module {}",
                    entry.path, old.module, entry.module
                ),
            )
            .label("second definition")
            .help("each path belongs to one module; set an option of the other module instead");
            if let Some(first) = &old.site {
                err = err.with_related(
                    Located::new("hardroot::duplicate-target", first, "first definition")
                        .label("first made here"),
                );
            }
            return Err(err);
        }
        self.entries.insert(entry.path.clone(), entry);
        Ok(())
    }

    /// Adds implied parent folders and checks that no file or link is used as a folder.
    pub fn finish(mut self) -> Result<BTreeMap<String, Entry>, Located> {
        let paths: Vec<String> = self.entries.keys().cloned().collect();
        for path in paths {
            let mut parent = path.as_str();
            while let Some((p, _)) = parent.rsplit_once('/') {
                parent = p;
                match self.entries.get(parent) {
                    Some(e) if e.kind != Kind::Dir => {
                        let site = self
                            .entries
                            .get(&path)
                            .and_then(|c| c.site.clone())
                            .unwrap_or_else(dummy_site);
                        return Err(Located::new(
                            CODE_PATH,
                            &site,
                            format!(
                                "/{path} would be inside /{parent}, which module {} makes a file or link",
                                e.module
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        self.entries.insert(parent.to_string(), implied_dir(parent));
                    }
                }
            }
        }
        Ok(self.entries)
    }
}

fn implied_dir(path: &str) -> Entry {
    Entry {
        path: path.to_string(),
        kind: Kind::Dir,
        mode: 0o755,
        owner: "root".into(),
        group: "root".into(),
        early: false,
        module: String::new(),
        template: None,
        site: None,
    }
}

fn dummy_site() -> Site {
    Site::new(
        &crate::source::SourceFile::new(Path::new("<overlay>"), String::new()),
        None,
    )
}
