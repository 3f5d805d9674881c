//! Source files and positions: every value hardroot reads remembers where it came from.
// Input-derived data is never unwrapped or indexed blindly (issue 8): enforced here,
// not crate-wide, because image/ and vmtest/ are checked by their owners.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]
use miette::{NamedSource, SourceSpan};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One input file (a profile or a module.toml), kept whole for diagnostics.
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    /// Path as shown to the user (relative to the working directory where possible).
    pub name: String,
    pub text: String,
}

pub type Source = Arc<SourceFile>;

impl SourceFile {
    pub fn new(path: &Path, text: String) -> Source {
        Arc::new(SourceFile {
            path: path.to_path_buf(),
            name: display_path(path),
            text,
        })
    }

    pub fn named(&self) -> NamedSource<String> {
        NamedSource::new(self.name.clone(), self.text.clone()).with_language("toml")
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

/// A place in a source file: "profiles/x.toml:12:5".
#[derive(Debug, Clone)]
pub struct Site {
    pub file: Source,
    pub span: Range<usize>,
}

impl Site {
    pub fn new(file: &Source, span: Option<Range<usize>>) -> Site {
        Site {
            file: file.clone(),
            span: span.unwrap_or(0..0),
        }
    }

    pub fn miette_span(&self) -> SourceSpan {
        (
            self.span.start,
            self.span.end.saturating_sub(self.span.start),
        )
            .into()
    }
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (line, col) = self.file.line_col(self.span.start);
        write!(f, "{}:{}:{}", self.file.name, line, col)
    }
}

/// Shows a path relative to the current directory when it is below it.
pub fn display_path(path: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    let shown = cwd
        .as_deref()
        .and_then(|c| path.strip_prefix(c).ok())
        .unwrap_or(path);
    shown.display().to_string()
}
