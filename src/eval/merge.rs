//! Merging the definitions of one option.
//!
//! - Scalars: only the highest priority counts (option default < module default <
//!   module `[[set]]` < profile < force); equal priority must agree.
//! - Lists: as in NixOS, ordinary definitions (module `[[set]]` and profile) are
//!   concatenated in definition order, so a profile can add a listener without
//!   dropping the modules' rows; defaults apply only when nobody defines the
//!   option; force replaces everything.
//! - Tables: key by key, each key by the scalar rule, so a profile can change one
//!   sysctl of a module's table.
use super::{CODE_CONFLICT, OptionValue, Origin};
use crate::diag::Located;
use crate::model::module::{OptionDecl, Priority};
use crate::model::types::Type;
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;

pub fn merge(decl: &OptionDecl, defs: Vec<(Json, Origin)>) -> Result<OptionValue, Located> {
    if matches!(decl.ty, Type::Table(_)) {
        return merge_tables(decl, &defs);
    }
    let top = defs.iter().map(|(_, o)| o.priority).max();
    let ordinary = |p: Priority| matches!(p, Priority::Set | Priority::Profile);
    let concatenates = decl.ty.is_list() && top.is_some_and(ordinary);
    let winners: Vec<(Json, Origin)> = defs
        .into_iter()
        .filter(|(_, o)| Some(o.priority) == top || (concatenates && ordinary(o.priority)))
        .collect();
    let origins: Vec<Origin> = winners.iter().map(|(_, o)| o.clone()).collect();
    let value = if decl.ty.is_list() {
        Json::Array(
            winners
                .into_iter()
                .flat_map(|(v, _)| v.as_array().cloned().unwrap_or_default())
                .collect(),
        )
    } else {
        merge_scalars(decl, &winners)?
    };
    Ok(OptionValue { value, origins })
}

fn merge_scalars(decl: &OptionDecl, winners: &[(Json, Origin)]) -> Result<Json, Located> {
    let Some((first, first_origin)) = winners.first() else {
        return Ok(Json::Null);
    };
    for (v, o) in winners.iter().skip(1) {
        if v != first {
            return Err(conflict(decl, &format!("{first} and {v}"), first_origin, o));
        }
    }
    Ok(first.clone())
}

/// Key by key: the highest priority definition of each key wins; equal ones must agree.
fn merge_tables(decl: &OptionDecl, defs: &[(Json, Origin)]) -> Result<OptionValue, Located> {
    let mut keys: BTreeMap<&str, (&Json, &Origin)> = BTreeMap::new();
    for (v, o) in defs {
        for (k, val) in v.as_object().into_iter().flatten() {
            match keys.get(k.as_str()) {
                Some((_, old)) if old.priority > o.priority => {}
                Some((existing, old)) if old.priority == o.priority && *existing != val => {
                    return Err(conflict(
                        decl,
                        &format!("key `{k}`: {existing} and {val}"),
                        old,
                        o,
                    ));
                }
                _ => {
                    keys.insert(k, (val, o));
                }
            }
        }
    }
    let value: Map<String, Json> = keys
        .iter()
        .map(|(k, (v, _))| (k.to_string(), (*v).clone()))
        .collect();
    let mut origins: Vec<Origin> = Vec::new();
    for (_, o) in keys.values() {
        if !origins.iter().any(|x| x.definition == o.definition) {
            origins.push((*o).clone());
        }
    }
    Ok(OptionValue {
        value: Json::Object(value),
        origins,
    })
}

fn conflict(decl: &OptionDecl, what: &str, a: &Origin, b: &Origin) -> Located {
    let name = format!("{}.{}", decl.module, decl.name);
    Located::new(CODE_CONFLICT, &b.site, format!("conflicting definitions of `{name}`: {what}"))
        .label(format!("defined here by {}", b.origin))
        .help("give one definition a higher priority ([force.<module>] in a profile, or priority = \"force\"/\"default\" in [[set]]), or make them agree")
        .with_related(Located::new(CODE_CONFLICT, &a.site, format!("`{name}` also defined by {}", a.origin)).label("first definition"))
}
