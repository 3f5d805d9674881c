//! Applying the overlay to a copy of the cached base image with debugfs, in
//! the manifest's sorted order, so that the result is reproducible and a
//! profile change costs seconds instead of a re-pack of the whole tree.
use super::base::BaseMeta;
use super::error::{Result, input_err};
use super::manifest::{BuildDir, Entry, EntryKind};
use super::pack::{quote, set_times};
use std::collections::BTreeMap;
use std::path::Path;

/// What the base has (or the overlay created) at a resolved path.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Dir,
    File,
    Link(String),
}

struct Tree<'a> {
    base: &'a BTreeMap<String, String>,
    added: BTreeMap<String, Node>,
}

impl Tree<'_> {
    fn get(&self, path: &str) -> Option<Node> {
        if let Some(n) = self.added.get(path) {
            return Some(n.clone());
        }
        let kind = self.base.get(path)?;
        Some(match kind.as_str() {
            "d" => Node::Dir,
            k if k.starts_with("l:") => Node::Link(k[2..].to_string()),
            _ => Node::File,
        })
    }

    /// Follows symlinks in every component but the last (and the last too
    /// when `follow_last`), e.g. lib/systemd → usr/lib/systemd on merged /usr.
    fn resolve(&self, path: &str, follow_last: bool) -> Result<String> {
        let mut parts: Vec<String> = path.split('/').rev().map(str::to_string).collect();
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = parts.pop() {
            let candidate = join(&done, &part);
            let last = parts.is_empty();
            match self.get(&candidate) {
                Some(Node::Link(target)) if !last || follow_last => {
                    hops += 1;
                    if hops > 40 {
                        return Err(input_err(
                            path,
                            "too many symlinks in the base",
                            "check the base tree",
                        ));
                    }
                    if target.starts_with('/') {
                        done.clear();
                    }
                    parts.extend(
                        target
                            .split('/')
                            .filter(|s| !s.is_empty() && *s != ".")
                            .rev()
                            .map(str::to_string),
                    );
                }
                _ if part == ".." => {
                    done.pop();
                }
                _ => done.push(part),
            }
        }
        Ok(done.join("/"))
    }
}

fn join(done: &[String], part: &str) -> String {
    if done.is_empty() {
        part.to_string()
    } else {
        format!("{}/{part}", done.join("/"))
    }
}

pub struct Ids<'a> {
    pub users: &'a BTreeMap<String, u32>,
    pub groups: &'a BTreeMap<String, u32>,
}

/// One filesystem's share of the overlay: entries with their path inside
/// that filesystem ("" is its root folder).
pub struct PlanInput<'a> {
    pub paths: &'a BTreeMap<String, String>,
    pub ids: Ids<'a>,
    pub overlay: &'a Path,
    pub entries: Vec<(String, &'a Entry)>,
    pub disable: &'a [String],
    pub sde: i64,
    pub uuid: String,
}

/// The debugfs script that turns the base image into the profile's image.
pub fn plan(build: &BuildDir, meta: &BaseMeta, uuid: &str) -> Result<String> {
    plan_fs(PlanInput {
        paths: &meta.paths,
        ids: Ids {
            users: &meta.users,
            groups: &meta.groups,
        },
        overlay: &build.overlay,
        entries: build
            .manifest
            .entries
            .iter()
            .map(|e| (e.path.clone(), e))
            .collect(),
        disable: &build.manifest.units.disable,
        sde: build.manifest.source_date_epoch,
        uuid: uuid.to_string(),
    })
}

pub fn plan_fs(mut input: PlanInput) -> Result<String> {
    let mut tree = Tree {
        base: input.paths,
        added: BTreeMap::new(),
    };
    let mut script = String::new();
    input.entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (rel, e) in &input.entries {
        if rel.is_empty() {
            root_attrs(&mut script, e, &input)?;
        } else {
            apply_entry(&mut script, &mut tree, &input, rel, e)?;
        }
    }
    disable_units(&mut script, &tree, input.disable)?;
    script.push_str(&format!("ssv uuid {}\n", input.uuid));
    Ok(script)
}

/// An entry naming a separate filesystem's mount point sets its root folder.
fn root_attrs(script: &mut String, e: &Entry, input: &PlanInput) -> Result<()> {
    if e.kind != EntryKind::Dir || e.implicit() {
        return Ok(());
    }
    set_owner_mode(script, "\"/\"", e, &input.ids, 0o040000)?;
    set_times(script, "/", input.sde)
}

fn apply_entry(
    script: &mut String,
    tree: &mut Tree,
    input: &PlanInput,
    rel: &str,
    e: &Entry,
) -> Result<()> {
    let ids = &input.ids;
    let follow_last = e.kind == EntryKind::Dir;
    let path = tree.resolve(rel, follow_last)?;
    let abs = quote(&format!("/{path}"))?;
    let existing = tree.get(&path);
    if existing == Some(Node::Dir) && e.kind != EntryKind::Dir {
        return Err(input_err(
            &e.path,
            "the overlay puts a non-folder where the base has a folder",
            "rename the target",
        ));
    }
    match e.kind {
        EntryKind::Dir => {
            match existing {
                None => script.push_str(&format!("mkdir {abs}\n")),
                Some(Node::Dir) if e.implicit() => return Ok(()),
                Some(Node::Dir) => {}
                Some(_) => {
                    return Err(input_err(
                        &e.path,
                        "the overlay puts a folder where the base has a file",
                        "rename the target",
                    ));
                }
            }
            tree.added.insert(path.clone(), Node::Dir);
            set_owner_mode(script, &abs, e, ids, 0o040000)?;
        }
        EntryKind::File => {
            if existing.is_some() {
                script.push_str(&format!("rm {abs}\n"));
            }
            let src = input.overlay.join(&e.path);
            script.push_str(&format!("write {} {abs}\n", quote(&src.to_string_lossy())?));
            tree.added.insert(path.clone(), Node::File);
            set_owner_mode(script, &abs, e, ids, 0o100000)?;
        }
        EntryKind::Symlink => {
            if existing.is_some() {
                script.push_str(&format!("rm {abs}\n"));
            }
            let target = e.target.clone().unwrap_or_default();
            script.push_str(&format!("symlink {abs} {}\n", quote(&target)?));
            tree.added.insert(path.clone(), Node::Link(target));
            set_ids(script, &abs, e, ids)?;
        }
    }
    set_times(script, &format!("/{path}"), input.sde)
}

fn set_owner_mode(
    script: &mut String,
    abs: &str,
    e: &Entry,
    ids: &Ids,
    file_type: u32,
) -> Result<()> {
    script.push_str(&format!(
        "sif {abs} mode 0{:o}\n",
        file_type | e.mode_bits()?
    ));
    set_ids(script, abs, e, ids)
}

fn set_ids(script: &mut String, abs: &str, e: &Entry, ids: &Ids) -> Result<()> {
    let uid = resolve_id(e.uid, &e.owner, ids.users, "user", &e.path)?;
    let gid = resolve_id(e.gid, &e.group, ids.groups, "group", &e.path)?;
    script.push_str(&format!("sif {abs} uid {uid}\nsif {abs} gid {gid}\n"));
    Ok(())
}

/// Owner names (ejabberd, postgres, …) only exist once packages are installed,
/// so they are looked up in the base's /etc/passwd and /etc/group.
fn resolve_id(
    id: Option<u32>,
    name: &str,
    table: &BTreeMap<String, u32>,
    what: &str,
    path: &str,
) -> Result<u32> {
    if let Some(id) = id {
        return Ok(id);
    }
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    table.get(name).copied().ok_or_else(|| {
        input_err(
            path,
            format!("{what} `{name}` does not exist in the base image"),
            format!("add the package that creates {what} `{name}` to the module's packages, or use an existing {what}"),
        )
    })
}

/// `units.disable`: remove the base's wants-links for these units.
fn disable_units(script: &mut String, tree: &Tree, units: &[String]) -> Result<()> {
    for (path, kind) in tree.base.iter() {
        let Some(rest) = path.strip_prefix("etc/systemd/system/") else {
            continue;
        };
        let Some((dir, name)) = rest.split_once('/') else {
            continue;
        };
        let wants = dir.ends_with(".wants") || dir.ends_with(".requires");
        if wants
            && kind.starts_with("l:")
            && units.iter().any(|u| u == name)
            && !tree.added.contains_key(path)
        {
            script.push_str(&format!("rm {}\n", quote(&format!("/{path}"))?));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> BTreeMap<String, String> {
        [
            ("lib", "l:usr/lib"),
            ("usr", "d"),
            ("usr/lib", "d"),
            ("usr/lib/systemd", "d"),
            ("etc", "d"),
            ("etc/alt", "l:/usr/lib"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
    }

    #[test]
    fn resolves_merged_usr_links() {
        let b = base();
        let t = Tree {
            base: &b,
            added: BTreeMap::new(),
        };
        assert_eq!(
            t.resolve("lib/systemd/x.service", false).ok().as_deref(),
            Some("usr/lib/systemd/x.service")
        );
        assert_eq!(t.resolve("lib", true).ok().as_deref(), Some("usr/lib"));
        assert_eq!(t.resolve("lib", false).ok().as_deref(), Some("lib"));
        assert_eq!(
            t.resolve("etc/alt/systemd", false).ok().as_deref(),
            Some("usr/lib/systemd")
        );
    }

    #[test]
    fn link_loops_are_an_error() {
        let b: BTreeMap<String, String> = [
            ("a".to_string(), "l:b".to_string()),
            ("b".to_string(), "l:a".to_string()),
        ]
        .into();
        let t = Tree {
            base: &b,
            added: BTreeMap::new(),
        };
        assert!(t.resolve("a/x", false).is_err());
    }
}
