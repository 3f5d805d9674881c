//! Option types. Values are checked here, before anything is rendered, so that
//! no profile value can carry a newline or a quote into a config file.
use super::raw::Raw;
use crate::source::Site;
use ipnet::IpNet;
use regex::Regex;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone)]
pub enum Type {
    Bool,
    Int {
        min: Option<i64>,
        max: Option<i64>,
    },
    Port,
    Str {
        pattern: Option<Regex>,
    },
    Text,
    /// One line of shell (a check command): quotes and backslashes allowed.
    Shell,
    Token,
    Hostname,
    Ipv4,
    Ipv6,
    Ip,
    Cidr,
    Cidr4,
    Cidr6,
    Path,
    Enum(Vec<String>),
    Record(BTreeMap<String, Field>),
    List(Box<Type>),
    Table(Box<Type>),
}

/// A field of a record: a small option of its own.
#[derive(Debug, Clone)]
pub struct Field {
    pub ty: Type,
    pub default: Option<Raw>,
    pub description: String,
}

/// A value that does not fit its type, and where it was written.
#[derive(Debug, Clone)]
pub struct TypeError {
    pub site: Site,
    pub message: String,
    /// What was expected right here (the innermost type), for the label under the snippet.
    pub expected: String,
}

pub const BASE_TYPES: &[&str] = &[
    "bool", "int", "port", "string", "text", "shell", "token", "hostname", "ipv4", "ipv6", "ip",
    "cidr", "cidr4", "cidr6", "path", "enum", "record",
];

impl Type {
    /// Human name as written in module.toml, e.g. "list of port".
    pub fn name(&self) -> String {
        match self {
            Type::Bool => "bool".into(),
            Type::Int { .. } => "int".into(),
            Type::Port => "port".into(),
            Type::Str { .. } => "string".into(),
            Type::Text => "text".into(),
            Type::Shell => "shell".into(),
            Type::Token => "token".into(),
            Type::Hostname => "hostname".into(),
            Type::Ipv4 => "ipv4".into(),
            Type::Ipv6 => "ipv6".into(),
            Type::Ip => "ip".into(),
            Type::Cidr => "cidr".into(),
            Type::Cidr4 => "cidr4".into(),
            Type::Cidr6 => "cidr6".into(),
            Type::Path => "path".into(),
            Type::Enum(v) => format!(
                "one of {}",
                v.iter()
                    .map(|s| format!("\"{s}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Type::Record(_) => "record".into(),
            Type::List(t) => format!("list of {}", t.name()),
            Type::Table(t) => format!("table of {}", t.name()),
        }
    }

    pub fn is_list(&self) -> bool {
        matches!(self, Type::List(_))
    }

    /// Checks a value and returns it in canonical form (numbers from strings, defaults filled in).
    pub fn check(&self, raw: &Raw) -> Result<Json, TypeError> {
        match (self, raw) {
            (Type::List(inner), Raw::List(items, _)) => Ok(Json::Array(
                items
                    .iter()
                    .map(|i| inner.check(i))
                    .collect::<Result<_, _>>()?,
            )),
            (Type::Table(inner), Raw::Table(fields, _)) => {
                let mut map = serde_json::Map::new();
                for (k, ks, v) in fields {
                    check_key(k, ks)?;
                    map.insert(k.clone(), inner.check(v)?);
                }
                Ok(Json::Object(map))
            }
            (Type::Record(decl), Raw::Table(..)) => check_record(decl, raw),
            (_, Raw::Scalar(v, site)) => self.check_scalar(v, site),
            (_, other) => Err(self.mismatch(other.site(), &describe(&other.to_json()))),
        }
    }

    fn mismatch(&self, site: &Site, found: &str) -> TypeError {
        TypeError {
            site: site.clone(),
            message: format!("expected {}, found {found}", article(&self.name())),
            expected: self.name(),
        }
    }

    fn check_scalar(&self, v: &Json, site: &Site) -> Result<Json, TypeError> {
        let fail = |why: String| TypeError {
            site: site.clone(),
            message: why,
            expected: self.name(),
        };
        let wrong = || self.mismatch(site, &describe(v));
        match self {
            Type::Bool => as_bool(v).map(Json::Bool).ok_or_else(wrong),
            Type::Int { min, max } => {
                let i = as_int(v).ok_or_else(wrong)?;
                if min.is_some_and(|m| i < m) || max.is_some_and(|m| i > m) {
                    return Err(fail(format!(
                        "{i} is out of range {}..={}",
                        fmt_bound(*min),
                        fmt_bound(*max)
                    )));
                }
                Ok(Json::from(i))
            }
            Type::Port => match as_int(v) {
                Some(p @ 1..=65535) => Ok(Json::from(p)),
                Some(p) => Err(fail(format!("{p} is not a port: expected 1..=65535"))),
                None => Err(wrong()),
            },
            Type::List(_) | Type::Table(_) | Type::Record(_) => Err(wrong()),
            _ => {
                let s = v.as_str().ok_or_else(wrong)?;
                self.check_str(s)
                    .map(|()| Json::String(s.to_string()))
                    .map_err(fail)
            }
        }
    }

    fn check_str(&self, s: &str) -> Result<(), String> {
        match self {
            Type::Str { pattern } => {
                one_line(s)?;
                if let Some(re) = pattern.as_ref().filter(|re| !re.is_match(s)) {
                    return Err(format!(
                        "{} does not match the pattern {}",
                        quoted(s),
                        re.as_str()
                    ));
                }
                Ok(())
            }
            Type::Text => text(s),
            Type::Shell => shell(s),
            Type::Token => token(s),
            Type::Hostname => hostname(s),
            Type::Ipv4 => s
                .parse::<Ipv4Addr>()
                .map(drop)
                .map_err(|_| format!("{} is not an IPv4 address", quoted(s))),
            Type::Ipv6 => s
                .parse::<Ipv6Addr>()
                .map(drop)
                .map_err(|_| format!("{} is not an IPv6 address", quoted(s))),
            Type::Ip => s
                .parse::<IpAddr>()
                .map(drop)
                .map_err(|_| format!("{} is not an IP address", quoted(s))),
            Type::Cidr => cidr(s, None),
            Type::Cidr4 => cidr(s, Some(4)),
            Type::Cidr6 => cidr(s, Some(6)),
            Type::Path => path(s),
            Type::Enum(values) => enum_value(s, values),
            _ => Err(format!("expected {}", article(&self.name()))),
        }
    }
}

fn check_record(decl: &BTreeMap<String, Field>, raw: &Raw) -> Result<Json, TypeError> {
    let Raw::Table(fields, site) = raw else {
        return Err(TypeError {
            site: raw.site().clone(),
            message: "expected a record (a TOML table)".into(),
            expected: "record".into(),
        });
    };
    let mut map = serde_json::Map::new();
    for (k, ks, v) in fields {
        let field = decl.get(k).ok_or_else(|| TypeError {
            site: ks.clone(),
            message: format!("unknown field `{k}`{}", did_you_mean(k, decl.keys())),
            expected: format!(
                "one of the fields {}",
                decl.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })?;
        map.insert(k.clone(), field.ty.check(v)?);
    }
    for (name, field) in decl {
        if map.contains_key(name) {
            continue;
        }
        let default = field.default.as_ref().ok_or_else(|| TypeError {
            site: site.clone(),
            message: format!(
                "missing field `{name}` ({}): {}",
                field.ty.name(),
                field.description
            ),
            expected: format!("a `{name}` field"),
        })?;
        map.insert(name.clone(), field.ty.check(default)?);
    }
    Ok(Json::Object(map))
}

fn check_key(k: &str, site: &Site) -> Result<(), TypeError> {
    token(k).map_err(|m| TypeError {
        site: site.clone(),
        message: format!("table key: {m}"),
        expected: "token".into(),
    })
}

/// " (did you mean `x`?)" when a known name is close to the unknown one.
pub fn did_you_mean<'a>(name: &str, known: impl IntoIterator<Item = &'a String>) -> String {
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(name, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

fn as_bool(v: &Json) -> Option<bool> {
    match v {
        Json::Bool(b) => Some(*b),
        Json::String(s) if s == "true" => Some(true),
        Json::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

/// Integers; strings of digits too, because templated values arrive as text.
fn as_int(v: &Json) -> Option<i64> {
    match v {
        Json::Number(n) => n.as_i64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn fmt_bound(b: Option<i64>) -> String {
    b.map(|b| b.to_string()).unwrap_or_default()
}

const MAX_LEN: usize = 8192;

/// Characters that break out of a line or a quoted value, or hide what a line says.
fn forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

fn one_line(s: &str) -> Result<(), String> {
    if s.len() > MAX_LEN {
        return Err(format!(
            "string is {} bytes long; at most {MAX_LEN} are allowed",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|&c| forbidden_char(c) || c == '"' || c == '\\')
    {
        return Err(format!(
            "{} contains {}: a string must be one line without control characters, `\"` or `\\`",
            quoted(s),
            char_name(c)
        ));
    }
    Ok(())
}

/// One line, no control character; unlike `string` it may hold `"` and `\`:
/// it is rendered only where shell quoting of its own surrounds it.
fn shell(s: &str) -> Result<(), String> {
    if s.len() > MAX_LEN {
        return Err(format!(
            "shell is {} bytes long; at most {MAX_LEN} are allowed",
            s.len()
        ));
    }
    match s.chars().find(|&c| forbidden_char(c)) {
        Some(c) => Err(format!(
            "{} contains {}: a shell value must be one line without control characters",
            quoted(s),
            char_name(c)
        )),
        None => Ok(()),
    }
}

fn text(s: &str) -> Result<(), String> {
    if s.len() > 1 << 20 {
        return Err("text is longer than 1 MiB".into());
    }
    match s
        .chars()
        .find(|&c| forbidden_char(c) && c != '\n' && c != '\t')
    {
        Some(c) => Err(format!("text contains {}", char_name(c))),
        None => Ok(()),
    }
}

fn token(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 1024
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:@+/=,-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not a token: expected letters, digits and ._:@+/=,-",
            quoted(s)
        ))
    }
}

fn hostname(s: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if s.len() <= 253 && s.split('.').all(label_ok) {
        Ok(())
    } else if let Some(c) = s.chars().find(|c| !c.is_ascii()) {
        Err(format!(
            "{} is not a hostname: it contains the non-ASCII character {c:?} (U+{:04X}), \
             maybe a look-alike of a Latin letter; write international names in punycode (xn--…)",
            quoted(s),
            c as u32
        ))
    } else {
        Err(format!(
            "{} is not a hostname: expected dot-separated labels of letters, digits and `-`",
            quoted(s)
        ))
    }
}

fn cidr(s: &str, family: Option<u8>) -> Result<(), String> {
    let net: IpNet = s.parse().map_err(|_| {
        format!(
            "{} is not a network in CIDR notation (like 192.0.2.0/24)",
            quoted(s)
        )
    })?;
    match (family, net) {
        (Some(4), IpNet::V6(_)) => {
            return Err(format!("{} is an IPv6 network; expected IPv4", quoted(s)));
        }
        (Some(6), IpNet::V4(_)) => {
            return Err(format!("{} is an IPv4 network; expected IPv6", quoted(s)));
        }
        _ => {}
    }
    if net.trunc() != net {
        return Err(format!(
            "{} has host bits set (did you mean `{}`?)",
            quoted(s),
            net.trunc()
        ));
    }
    Ok(())
}

fn path(s: &str) -> Result<(), String> {
    let bad = !s.starts_with('/')
        || s.contains("//")
        || s.split('/').any(|c| c == ".." || c == ".")
        || s.chars()
            .any(|c| forbidden_char(c) || c.is_whitespace() || "\"\\'$`;".contains(c));
    if bad {
        Err(format!(
            "{} is not a clean absolute path (no `..`, `.`, `//`, spaces, quotes or control characters)",
            quoted(s)
        ))
    } else {
        Ok(())
    }
}

fn enum_value(s: &str, values: &[String]) -> Result<(), String> {
    if values.iter().any(|v| v == s) {
        return Ok(());
    }
    let list = values
        .iter()
        .map(|v| format!("\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ");
    Err(format!(
        "{} is not one of {list}{}",
        quoted(s),
        did_you_mean(s, values)
    ))
}

/// Shows a value with its control characters escaped, so the message itself stays one line.
/// Bidi overrides and invisible characters are escaped too: an error message must
/// not reorder or hide what the terminal shows ("Trojan Source").
pub fn quoted(s: &str) -> String {
    let short: String = s.chars().take(80).collect();
    let more = if s.chars().count() > 80 { "…" } else { "" };
    let json = serde_json::to_string(&short).unwrap_or_default();
    let visible: String = json
        .chars()
        .map(|c| {
            if forbidden_char(c) {
                format!("\\u{{{:04X}}}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect();
    format!("{visible}{more}")
}

fn char_name(c: char) -> String {
    match c {
        '\n' => "a newline".into(),
        '\0' => "a NUL byte".into(),
        '"' => "a double quote".into(),
        '\\' => "a backslash".into(),
        c => format!("the character U+{:04X}", c as u32),
    }
}

pub fn describe(v: &Json) -> String {
    match v {
        Json::Null => "nothing".into(),
        Json::Bool(b) => format!("the bool {b}"),
        Json::Number(n) => format!("the number {n}"),
        Json::String(s) => format!("the string {}", quoted(s)),
        Json::Array(_) => "a list".into(),
        Json::Object(_) => "a table".into(),
    }
}

fn article(name: &str) -> String {
    let vowel = name.starts_with(['a', 'e', 'i', 'o', 'u']) && !name.starts_with("one");
    if name.starts_with("one of") || name.starts_with("list") || name.starts_with("table") {
        name.to_string()
    } else if vowel {
        format!("an {name}")
    } else {
        format!("a {name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;

    fn raw(v: Json) -> Raw {
        let file = SourceFile::new(std::path::Path::new("t.toml"), String::new());
        Raw::Scalar(v, Site::new(&file, None))
    }

    fn ok(t: &Type, v: Json) -> bool {
        t.check(&raw(v)).is_ok()
    }

    const HOSTILE: &[&str] = &[
        "a\nPermitRootLogin yes",
        "a\0b",
        "a\"; include /etc/shadow; \"",
        "a\\nb",
        "x\u{2028}y",
        "x\u{202E}gnp.exe",
        "\u{FEFF}bom",
        "tab\there",
        "cr\rhere",
    ];

    #[test]
    fn strings_refuse_everything_that_could_leave_a_line_or_a_quote() {
        let s = Type::Str { pattern: None };
        for h in HOSTILE {
            assert!(
                !ok(&s, Json::String(h.to_string())),
                "string accepted {h:?}"
            );
        }
        assert!(ok(
            &s,
            Json::String("default-src 'self'; img-src 'self' data:".into())
        ));
        assert!(!ok(&s, Json::String("x".repeat(MAX_LEN + 1))));
    }

    #[test]
    fn hostnames_ips_tokens_and_paths_refuse_hostile_values() {
        for t in [
            Type::Hostname,
            Type::Ipv4,
            Type::Ipv6,
            Type::Ip,
            Type::Token,
            Type::Path,
            Type::Cidr,
        ] {
            for h in HOSTILE
                .iter()
                .chain(&["$(reboot)", "{{ x }}", "a b", "exаmple.org"])
            {
                assert!(
                    !ok(&t, Json::String(h.to_string())),
                    "{} accepted {h:?}",
                    t.name()
                );
            }
        }
        assert!(ok(
            &Type::Hostname,
            Json::String("conference.example.org".into())
        ));
        assert!(!ok(&Type::Hostname, Json::String("-bad.example".into())));
        assert!(ok(&Type::Path, Json::String("/etc/ssl/certs/x.pem".into())));
        assert!(!ok(&Type::Path, Json::String("/etc/../shadow".into())));
        assert!(!ok(&Type::Path, Json::String("relative/path".into())));
    }

    #[test]
    fn shell_allows_quotes_but_stays_one_line() {
        assert!(ok(
            &Type::Shell,
            Json::String(r#"grep -E "^a\.b" /etc/x && say "ok""#.into())
        ));
        assert!(!ok(
            &Type::Shell,
            Json::String("true\nPermitRootLogin yes".into())
        ));
        assert!(!ok(&Type::Shell, Json::String("tab\there".into())));
    }

    #[test]
    fn text_allows_newlines_but_no_other_control_characters() {
        assert!(ok(
            &Type::Text,
            Json::String("line 1\nline 2\twith tab".into())
        ));
        assert!(!ok(&Type::Text, Json::String("bell\u{7}".into())));
    }

    #[test]
    fn numbers_ports_and_ranges() {
        assert!(ok(&Type::Port, Json::from(22)));
        assert!(
            ok(&Type::Port, Json::String("5222".into())),
            "templated values arrive as text"
        );
        assert!(!ok(&Type::Port, Json::from(0)));
        assert!(!ok(&Type::Port, Json::from(65536)));
        assert!(!ok(&Type::Port, Json::String("22; rm".into())));
        let small = Type::Int {
            min: Some(1),
            max: Some(10),
        };
        assert!(ok(&small, Json::from(10)) && !ok(&small, Json::from(11)));
    }

    #[test]
    fn cidrs_by_family_and_without_host_bits() {
        assert!(ok(&Type::Cidr4, Json::String("203.0.113.0/24".into())));
        assert!(!ok(&Type::Cidr4, Json::String("2001:db8::/32".into())));
        assert!(ok(&Type::Cidr6, Json::String("2001:db8::/32".into())));
        let e = Type::Cidr
            .check(&raw(Json::String("10.1.2.3/8".into())))
            .unwrap_err();
        assert!(
            e.message.contains("did you mean `10.0.0.0/8`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn enums_suggest_the_closest_value() {
        let t = Type::Enum(vec!["no".into(), "prohibit-password".into()]);
        let e = t
            .check(&raw(Json::String("prohibit-pasword".into())))
            .unwrap_err();
        assert!(
            e.message.contains("did you mean `prohibit-password`"),
            "{}",
            e.message
        );
    }
}
