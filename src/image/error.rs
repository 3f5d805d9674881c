//! Errors of the image stage. Each one says what went wrong and what to do.
use miette::Diagnostic;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error, Diagnostic)]
pub enum ImageError {
    #[error("`{tool}` was not found on PATH")]
    #[diagnostic(help("install it with: apt-get install --no-install-recommends {package}"))]
    ToolMissing { tool: String, package: String },

    #[error("`hardroot image` must run as root")]
    #[diagnostic(help(
        "mmdebstrap needs root to install packages with their real owners, and the \
         image must keep those owners; run it with sudo or as root"
    ))]
    NotRoot,

    #[error("{action} {path}: {source}")]
    #[diagnostic(help("{hint}"))]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
        hint: String,
    },

    #[error("`{command}` failed ({status})")]
    #[diagnostic(help("{hint}"))]
    Command {
        command: String,
        status: String,
        hint: String,
    },

    #[error("{path}: {message}")]
    #[diagnostic(help("{hint}"))]
    Input {
        path: PathBuf,
        message: String,
        hint: String,
    },

    #[error("golden-image hygiene check failed:\n{}", .violations.join("\n"))]
    #[diagnostic(help(
        "remove these from the base with the `system.scrub` option, or fix the module \
         that renders them; secrets must be generated on first boot"
    ))]
    Hygiene { violations: Vec<String> },

    #[error("the mirror no longer serves the recorded versions of {} packages:\n{}", .packages.len(), .packages.join("\n"))]
    #[diagnostic(help(
        "point the base at a dated snapshot archive that still has them: \
         --snapshot URL (a snapshot archive's URL with the build's date, see docs/sbom.md), \
         or --sources FILE with such an archive"
    ))]
    VersionsUnavailable { packages: Vec<String> },

    #[error("the rebuild differs from the published image:\n{report}")]
    #[diagnostic(help(
        "the published image is not what its inputs build: it was changed after the build, \
         or the build is not reproducible on this host (compare the files named above)"
    ))]
    NotReproduced { report: String },

    #[error("the SBOM could not be written: {message}")]
    #[diagnostic(help("this is a bug in hardroot; please report it with the image's profile"))]
    Sbom { message: String },

    #[error("{location}: the base could not be sent to the shared cache:\n{message}")]
    #[diagnostic(help(
        "the image was not built because --cache-to could not be honoured; fix the \
         registry or its credentials (docs/fleet.md), or build without --cache-to"
    ))]
    SharedCache { location: String, message: String },

    #[error("debugfs could not apply the overlay to {image}:\n{errors}")]
    #[diagnostic(help("the half-patched image was discarded; this is a bug in hardroot"))]
    Debugfs { image: PathBuf, errors: String },
}

pub type Result<T> = std::result::Result<T, ImageError>;

/// Wraps an io::Error with the path it concerns. A full disk gets its own hint,
/// because nothing half-written is ever left under a final name.
pub fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.into();
    move |source| {
        let hint = if source.kind() == std::io::ErrorKind::StorageFull {
            format!(
                "the disk holding {} is full; free some space (or point --cache / -o elsewhere) \
                 and run again — no partial output was kept",
                path.display()
            )
        } else {
            "check that the path exists and is writable".to_string()
        };
        ImageError::Io {
            action,
            path,
            source,
            hint,
        }
    }
}

pub fn input_err(
    path: impl Into<PathBuf>,
    message: impl Into<String>,
    hint: impl Into<String>,
) -> ImageError {
    ImageError::Input {
        path: path.into(),
        message: message.into(),
        hint: hint.into(),
    }
}
