//! A TOML value that keeps the position of every element, so that a type error
//! deep inside a list of records still points at the right line and column.
use crate::source::{Site, Source};
use serde_json::Value as Json;
use toml_edit::{Item, Value};

#[derive(Debug, Clone)]
pub enum Raw {
    Scalar(Json, Site),
    List(Vec<Raw>, Site),
    Table(Vec<(String, Site, Raw)>, Site),
}

impl Raw {
    pub fn site(&self) -> &Site {
        match self {
            Raw::Scalar(_, s) | Raw::List(_, s) | Raw::Table(_, s) => s,
        }
    }

    pub fn from_item(item: &Item, file: &Source) -> Option<Raw> {
        match item {
            Item::None => None,
            Item::Value(v) => Some(Raw::from_value(v, file)),
            Item::Table(t) => {
                let fields = t
                    .iter()
                    .filter_map(|(k, v)| {
                        let key_site = Site::new(file, t.key(k).and_then(|k| k.span()));
                        Raw::from_item(v, file).map(|r| (k.to_string(), key_site, r))
                    })
                    .collect();
                Some(Raw::Table(fields, Site::new(file, t.span())))
            }
            Item::ArrayOfTables(a) => {
                let items = a
                    .iter()
                    .filter_map(|t| Raw::from_item(&Item::Table(t.clone()), file));
                Some(Raw::List(items.collect(), Site::new(file, a.span())))
            }
        }
    }

    pub fn from_value(v: &Value, file: &Source) -> Raw {
        let site = Site::new(file, v.span());
        match v {
            Value::String(s) => Raw::Scalar(Json::String(s.value().clone()), site),
            Value::Integer(i) => Raw::Scalar(Json::from(*i.value()), site),
            Value::Float(f) => Raw::Scalar(Json::from(*f.value()), site),
            Value::Boolean(b) => Raw::Scalar(Json::Bool(*b.value()), site),
            Value::Datetime(d) => Raw::Scalar(Json::String(d.value().to_string()), site),
            Value::Array(a) => {
                Raw::List(a.iter().map(|v| Raw::from_value(v, file)).collect(), site)
            }
            Value::InlineTable(t) => {
                let fields = t
                    .iter()
                    .map(|(k, v)| {
                        let key_site = Site::new(file, t.key(k).and_then(|k| k.span()));
                        (k.to_string(), key_site, Raw::from_value(v, file))
                    })
                    .collect();
                Raw::Table(fields, site)
            }
        }
    }

    /// The plain value, positions dropped.
    pub fn to_json(&self) -> Json {
        match self {
            Raw::Scalar(v, _) => v.clone(),
            Raw::List(items, _) => Json::Array(items.iter().map(Raw::to_json).collect()),
            Raw::Table(fields, _) => Json::Object(
                fields
                    .iter()
                    .map(|(k, _, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// True when some string inside is a Tera template that must be rendered first.
    pub fn has_template(&self) -> bool {
        match self {
            Raw::Scalar(Json::String(s), _) => is_template(s),
            Raw::Scalar(..) => false,
            Raw::List(items, _) => items.iter().any(Raw::has_template),
            Raw::Table(fields, _) => fields.iter().any(|(_, _, v)| v.has_template()),
        }
    }

    /// Rebuilds the value with every string passed through `f` (used to render templates).
    pub fn map_strings<E>(
        &self,
        f: &mut impl FnMut(&str, &Site) -> Result<String, E>,
    ) -> Result<Raw, E> {
        Ok(match self {
            Raw::Scalar(Json::String(s), site) => {
                Raw::Scalar(Json::String(f(s, site)?), site.clone())
            }
            Raw::Scalar(..) => self.clone(),
            Raw::List(items, site) => Raw::List(
                items
                    .iter()
                    .map(|i| i.map_strings(f))
                    .collect::<Result<_, E>>()?,
                site.clone(),
            ),
            Raw::Table(fields, site) => {
                let fields = fields
                    .iter()
                    .map(|(k, ks, v)| Ok((k.clone(), ks.clone(), v.map_strings(f)?)))
                    .collect::<Result<_, E>>()?;
                Raw::Table(fields, site.clone())
            }
        })
    }

    pub fn field(&self, name: &str) -> Option<&Raw> {
        match self {
            Raw::Table(fields, _) => fields.iter().find(|(k, _, _)| k == name).map(|(_, _, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Raw::Scalar(Json::String(s), _) => Some(s),
            _ => None,
        }
    }
}

pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}
