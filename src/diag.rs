//! A diagnostic that points into an input file: the shape every layer's
//! input errors share (file:line:col, the snippet, what was expected).
// Input-derived data is never unwrapped or indexed blindly (issue 8): enforced here,
// not crate-wide, because image/ and vmtest/ are checked by their owners.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]
use crate::source::Site;
use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};
use std::fmt;

/// Boxed so that `Result<_, Located>` stays small on the happy path.
#[derive(Debug)]
pub struct Located(Box<LocatedInner>);

#[derive(Debug)]
pub struct LocatedInner {
    /// Stable error kind, e.g. `hardroot::type` (documented in README, used by the bad-input corpus).
    pub code: &'static str,
    pub message: String,
    pub site: Site,
    pub label: String,
    pub help: Option<String>,
    /// Other places that take part (the second definition of a conflict, ...).
    pub related: Vec<Located>,
    src: NamedSource<String>,
}

impl std::ops::Deref for Located {
    type Target = LocatedInner;
    fn deref(&self) -> &LocatedInner {
        &self.0
    }
}

impl Located {
    pub fn new(code: &'static str, site: &Site, message: impl Into<String>) -> Located {
        Located(Box::new(LocatedInner {
            code,
            message: message.into(),
            site: site.clone(),
            label: "here".into(),
            help: None,
            related: Vec::new(),
            src: site.file.named(),
        }))
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.0.label = label.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.0.help = Some(help.into());
        self
    }

    pub fn with_related(mut self, other: Located) -> Self {
        self.0.related.push(other);
        self
    }
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.site, self.message)
    }
}

impl std::error::Error for Located {}

impl Diagnostic for Located {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        snippet_fits(&self.site).then_some(&self.src as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if !snippet_fits(&self.site) {
            return None;
        }
        let span = LabeledSpan::new_with_span(Some(self.label.clone()), self.site.miette_span());
        Some(Box::new(std::iter::once(span)))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(self.related.iter().map(|r| r as &dyn Diagnostic)))
    }
}

/// A snippet helps when it is a few readable lines; a 9000-character line or a
/// 1 MiB multi-line value would bury the message (which names file:line:col anyway).
fn snippet_fits(site: &Site) -> bool {
    const MAX_LINE: usize = 400;
    const MAX_LINES: usize = 30;
    let text = &site.file.text;
    if text.is_empty() {
        return false; // I/O errors: there is no text to show
    }
    let start = site.span.start.min(text.len());
    let end = site.span.end.clamp(start, text.len());
    let line_start = text
        .get(..start)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line_end = text
        .get(end..)
        .and_then(|t| t.find('\n'))
        .map_or(text.len(), |i| end + i);
    let region = text.get(line_start..line_end).unwrap_or("");
    region.lines().count() <= MAX_LINES && region.lines().all(|l| l.len() <= MAX_LINE)
}

/// Several input errors at once (all failed assertions, every type error of a round).
#[derive(Debug)]
pub struct Errors(pub Vec<Located>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} errors", self.0.len())
    }
}

impl std::error::Error for Errors {}

impl Diagnostic for Errors {
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        Some(Box::new(self.0.iter().map(|r| r as &dyn Diagnostic)))
    }
}

/// One error as itself, several as a list.
pub fn report(mut errors: Vec<Located>) -> miette::Report {
    if errors.len() == 1
        && let Some(e) = errors.pop()
    {
        return miette::Report::new(e);
    }
    miette::Report::new(Errors(errors))
}
