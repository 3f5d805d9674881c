//! systemd: `.wants/` links for enabled units, `/dev/null` links for masked ones.
use super::paths::{CODE_PATH, Tree};
use super::{EnabledUnit, Kind, Units, enabled};
use crate::diag::Located;
use crate::eval::{Config, context_for};

/// Where a packaged unit lives on Debian 12 (merged /usr: /lib is /usr/lib).
const PACKAGED: &str = "/lib/systemd/system";

pub fn apply(config: &Config, json: &serde_json::Value, tree: &mut Tree) -> Result<Units, Located> {
    let mut units = Units::default();
    for m in &config.modules {
        let ctx = context_for(json, &m.name, &config.profile.name);
        for u in &m.mask {
            if enabled(u, &ctx)? {
                tree.add_link(
                    &format!("/etc/systemd/system/{}", u.item),
                    &u.site,
                    "/dev/null",
                    &m.name,
                )?;
                units.mask.push(u.item.clone());
            }
        }
        for u in &m.disable {
            if enabled(u, &ctx)? {
                units.disable.push(u.item.clone());
            }
        }
        for u in &m.enable {
            if !enabled(u, &ctx)? {
                continue;
            }
            let (unit_path, install) = locate(tree, &u.item.unit);
            let targets = match (&u.item.wanted_by, install) {
                (Some(w), _) => vec![(w.clone(), "wants")],
                (None, Some(found)) if !found.is_empty() => found,
                (None, _) => vec![("multi-user.target".to_string(), "wants")],
            };
            for (target, kind) in targets {
                if !valid_unit(&target) {
                    return Err(Located::new(
                        CODE_PATH,
                        &u.site,
                        format!("{target:?} is not a unit name"),
                    ));
                }
                let link = format!("/etc/systemd/system/{target}.{kind}/{}", u.item.unit);
                tree.add_link(&link, &u.site, &unit_path, &m.name)?;
                units.enable.push(EnabledUnit {
                    unit: u.item.unit.clone(),
                    wanted_by: target,
                });
            }
        }
    }
    units.mask.sort();
    units.disable.sort();
    units
        .enable
        .sort_by(|a, b| (&a.unit, &a.wanted_by).cmp(&(&b.unit, &b.wanted_by)));
    Ok(units)
}

fn valid_unit(s: &str) -> bool {
    s.contains('.')
        && !s.contains('/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-:\\".contains(c))
}

/// The unit's file (rendered by a module, or packaged) and, when rendered, its [Install] targets.
fn locate(tree: &Tree, unit: &str) -> (String, Option<Vec<(String, &'static str)>>) {
    for dir in [
        "etc/systemd/system",
        "lib/systemd/system",
        "usr/lib/systemd/system",
    ] {
        if let Some(e) = tree.get(&format!("{dir}/{unit}"))
            && let Kind::File(bytes) = &e.kind
        {
            return (
                format!("/{dir}/{unit}"),
                Some(install_targets(&String::from_utf8_lossy(bytes))),
            );
        }
    }
    (format!("{PACKAGED}/{unit}"), None)
}

/// WantedBy= and RequiredBy= of the [Install] section.
pub fn install_targets(unit_text: &str) -> Vec<(String, &'static str)> {
    let mut in_install = false;
    let mut out = Vec::new();
    for line in unit_text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_install = line == "[Install]";
            continue;
        }
        if !in_install {
            continue;
        }
        let (key, kind) = if let Some(v) = line.strip_prefix("WantedBy=") {
            (v, "wants")
        } else if let Some(v) = line.strip_prefix("RequiredBy=") {
            (v, "requires")
        } else {
            continue;
        };
        out.extend(key.split_whitespace().map(|t| (t.to_string(), kind)));
    }
    out
}
