//! Merging the definitions of one option: only the highest priority counts;
//! lists concatenate in definition order, tables merge by key, scalars must agree.
use super::{CODE_CONFLICT, OptionValue, Origin};
use crate::diag::Located;
use crate::model::module::OptionDecl;
use crate::model::types::Type;
use serde_json::{Map, Value as Json};

pub fn merge(decl: &OptionDecl, defs: Vec<(Json, Origin)>) -> Result<OptionValue, Located> {
    let top = defs.iter().map(|(_, o)| o.priority).max();
    let winners: Vec<(Json, Origin)> = defs
        .into_iter()
        .filter(|(_, o)| Some(o.priority) == top)
        .collect();
    let origins: Vec<Origin> = winners.iter().map(|(_, o)| o.clone()).collect();
    let value = match &decl.ty {
        Type::List(_) => Json::Array(
            winners
                .into_iter()
                .flat_map(|(v, _)| v.as_array().cloned().unwrap_or_default())
                .collect(),
        ),
        Type::Table(_) => merge_tables(decl, &winners)?,
        _ => merge_scalars(decl, &winners)?,
    };
    Ok(OptionValue { value, origins })
}

fn merge_scalars(decl: &OptionDecl, winners: &[(Json, Origin)]) -> Result<Json, Located> {
    let Some((first, first_origin)) = winners.first() else {
        return Ok(Json::Null);
    };
    for (v, o) in &winners[1..] {
        if v != first {
            return Err(conflict(decl, &format!("{first} and {v}"), first_origin, o));
        }
    }
    Ok(first.clone())
}

fn merge_tables(decl: &OptionDecl, winners: &[(Json, Origin)]) -> Result<Json, Located> {
    let mut out: Map<String, Json> = Map::new();
    let mut owner: Vec<(String, &Origin)> = Vec::new();
    for (v, o) in winners {
        for (k, val) in v.as_object().into_iter().flatten() {
            match out.get(k) {
                Some(existing) if existing != val => {
                    let first = owner
                        .iter()
                        .find(|(key, _)| key == k)
                        .map_or(o, |(_, o)| *o);
                    return Err(conflict(
                        decl,
                        &format!("key `{k}`: {existing} and {val}"),
                        first,
                        o,
                    ));
                }
                Some(_) => {}
                None => {
                    out.insert(k.clone(), val.clone());
                    owner.push((k.clone(), o));
                }
            }
        }
    }
    Ok(Json::Object(out))
}

fn conflict(decl: &OptionDecl, what: &str, a: &Origin, b: &Origin) -> Located {
    let name = format!("{}.{}", decl.module, decl.name);
    Located::new(CODE_CONFLICT, &b.site, format!("conflicting definitions of `{name}`: {what}"))
        .label(format!("defined here by {}", b.origin))
        .help("give one definition a higher priority ([force.<module>] in a profile, or priority = \"force\"/\"default\" in [[set]]), or make them agree")
        .with_related(Located::new(CODE_CONFLICT, &a.site, format!("`{name}` also defined by {}", a.origin)).label("first definition"))
}
