//! Reading module.toml and profile tables field by field, with positions and
//! "unknown key" errors, so a typo in a module is caught like a typo in a profile.
use super::raw::Raw;
use super::types::did_you_mean;
use crate::diag::Located;
use crate::source::{Site, Source};
use toml_edit::{Item, Table};

pub const CODE_SCHEMA: &str = "hardroot::schema";

pub struct Reader<'a> {
    pub table: &'a Table,
    pub file: &'a Source,
    /// What this table is, for messages: "[module]", "[[files]] entry".
    pub what: String,
    known: Vec<String>,
}

impl<'a> Reader<'a> {
    pub fn new(table: &'a Table, file: &'a Source, what: impl Into<String>) -> Self {
        Reader {
            table,
            file,
            what: what.into(),
            known: Vec::new(),
        }
    }

    pub fn site(&self) -> Site {
        Site::new(self.file, self.table.span())
    }

    pub fn key_site(&self, key: &str) -> Site {
        let span = self
            .table
            .key(key)
            .and_then(|k| k.span())
            .or_else(|| self.table.span());
        Site::new(self.file, span)
    }

    fn item(&mut self, key: &str) -> Option<&'a Item> {
        self.known.push(key.to_string());
        self.table.get(key).filter(|i| !i.is_none())
    }

    pub fn raw(&mut self, key: &str) -> Option<Raw> {
        let file = self.file;
        self.item(key).and_then(|i| Raw::from_item(i, file))
    }

    pub fn string(&mut self, key: &str) -> Result<Option<(String, Site)>, Located> {
        let Some(raw) = self.raw(key) else {
            return Ok(None);
        };
        match raw.as_str() {
            Some(s) => Ok(Some((s.to_string(), raw.site().clone()))),
            None => Err(self.expected(&raw, &format!("`{key}` to be a string"))),
        }
    }

    pub fn required_string(&mut self, key: &str) -> Result<(String, Site), Located> {
        let site = self.site();
        let what = self.what.clone();
        self.string(key)?.ok_or_else(|| {
            Located::new(CODE_SCHEMA, &site, format!("{what} needs `{key}`"))
                .label(format!("`{key}` missing here"))
        })
    }

    pub fn bool(&mut self, key: &str) -> Result<bool, Located> {
        match self.raw(key) {
            None => Ok(false),
            Some(Raw::Scalar(serde_json::Value::Bool(b), _)) => Ok(b),
            Some(raw) => Err(self.expected(&raw, &format!("`{key}` to be true or false"))),
        }
    }

    pub fn table(&mut self, key: &str) -> Result<Option<&'a Table>, Located> {
        let file = self.file;
        match self.item(key) {
            None => Ok(None),
            Some(Item::Table(t)) => Ok(Some(t)),
            Some(other) => {
                let site = Site::new(file, other.span());
                Err(Located::new(
                    CODE_SCHEMA,
                    &site,
                    format!("expected `{key}` to be a table"),
                ))
            }
        }
    }

    /// `[[key]]` arrays of tables (inline arrays of inline tables are accepted too).
    pub fn tables(&mut self, key: &str) -> Result<Vec<Table>, Located> {
        let file = self.file;
        match self.item(key) {
            None => Ok(Vec::new()),
            Some(Item::ArrayOfTables(a)) => Ok(a.iter().cloned().collect()),
            Some(Item::Value(toml_edit::Value::Array(a))) => a
                .iter()
                .map(|v| match v {
                    toml_edit::Value::InlineTable(t) => Ok(t.clone().into_table()),
                    other => Err(Located::new(
                        CODE_SCHEMA,
                        &Site::new(file, other.span()),
                        format!("expected `{key}` entries to be tables"),
                    )),
                })
                .collect(),
            Some(other) => Err(Located::new(
                CODE_SCHEMA,
                &Site::new(file, other.span()),
                format!("expected `[[{key}]]` entries"),
            )),
        }
    }

    pub fn expected(&self, raw: &Raw, what: &str) -> Located {
        Located::new(
            CODE_SCHEMA,
            raw.site(),
            format!("in {}: expected {what}", self.what),
        )
    }

    /// Rejects keys nobody asked for.
    pub fn finish(self) -> Result<(), Located> {
        for (key, _) in self.table.iter() {
            if !self.known.iter().any(|k| k == key) {
                let site = self.key_site(key);
                let hint = did_you_mean(key, &self.known);
                return Err(Located::new(
                    CODE_SCHEMA,
                    &site,
                    format!("unknown key `{key}` in {}{hint}", self.what),
                )
                .label("not a known key")
                .help(format!("known keys: {}", self.known.join(", "))));
            }
        }
        Ok(())
    }
}

pub fn parse_toml(file: &Source) -> Result<toml_edit::Document<String>, Located> {
    toml_edit::Document::parse(file.text.clone()).map_err(|e| {
        let site = Site::new(file, e.span());
        Located::new(
            "hardroot::toml",
            &site,
            format!("invalid TOML: {}", e.message().trim()),
        )
        .label("here")
    })
}
