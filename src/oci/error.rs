//! Errors of the registry layer (`push`, `pull`, the base cache through a
//! registry). Each says what failed and what to do; none carries a credential.
use miette::Diagnostic;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error, Diagnostic)]
pub enum OciError {
    #[error("{reference}: not a registry reference ({message})")]
    #[diagnostic(help("write it as HOST[:PORT]/REPOSITORY:TAG, e.g. 127.0.0.1:5000/fleet/web:1"))]
    Reference { reference: String, message: String },

    #[error("{path}: {message}")]
    #[diagnostic(help("{hint}"))]
    Input {
        path: PathBuf,
        message: String,
        hint: String,
    },

    #[error("{action} {path}: {source}")]
    #[diagnostic(help(
        "check that the path exists and is writable, and that its disk is not full"
    ))]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{registry} refused the credentials for {reference}")]
    #[diagnostic(help(
        "set HARDROOT_REGISTRY_USERNAME and HARDROOT_REGISTRY_PASSWORD, or point \
         HARDROOT_REGISTRY_AUTH_FILE at a docker-config-style file (\"auths\": {{ \"{registry}\": \
         {{ \"auth\": base64(user:password) }} }}), or log in with `docker login {registry}`"
    ))]
    Unauthorized { registry: String, reference: String },

    #[error("{reference}: {what} failed after {attempts} attempts: {message}")]
    #[diagnostic(help(
        "the registry was unreachable or dropped the connection; nothing incomplete was \
         published (a manifest is pushed only after all its blobs); run the command again"
    ))]
    Transfer {
        reference: String,
        what: String,
        attempts: u32,
        message: String,
    },

    #[error("{reference}: {message}")]
    #[diagnostic(help("{hint}"))]
    Registry {
        reference: String,
        message: String,
        hint: String,
    },

    #[error("{file}: sha256 {actual} is not the {expected} that {source_of_truth} records")]
    #[diagnostic(help(
        "the registry served other bytes than the artifact's manifest names; nothing was \
         written in place. Push the image again"
    ))]
    Digest {
        file: String,
        expected: String,
        actual: String,
        source_of_truth: &'static str,
    },
}

pub type Result<T> = std::result::Result<T, OciError>;

pub fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> OciError {
    let path = path.into();
    move |source| OciError::Io {
        action,
        path,
        source,
    }
}
