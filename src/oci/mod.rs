//! Registry layer: an image folder as one OCI artifact (`hardroot push` /
//! `hardroot pull`), through the oci-client crate.
//!
//! The artifact is an OCI 1.1 image manifest with `artifactType`
//! application/vnd.hardroot.image.v1, the empty config, and one layer per
//! file (disk.img, disk.qcow2, image-manifest.json, sbom.cdx.json, a report),
//! each titled with its file name (`org.opencontainers.image.title`, as ORAS
//! does). A layer's digest is the file's sha256, the one image-manifest.json
//! records. Blobs stream from and to disk in chunks; a dropped connection is
//! retried (a push starts the blob's upload again, a pull resumes at the byte
//! it reached), and the manifest, which makes the artifact visible, goes last.
pub mod artifact;
pub mod auth;
pub mod bases;
pub mod error;
pub mod pull;
pub mod push;

pub use error::OciError;
use error::Result;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::{Client, Reference};
use std::time::Duration;

/// Transfers of one blob or manifest are tried this many times.
pub const ATTEMPTS: u32 = 4;

/// Parses HOST[:PORT]/REPOSITORY[:TAG|@DIGEST].
pub fn reference(text: &str) -> Result<Reference> {
    text.parse::<Reference>().map_err(|e| OciError::Reference {
        reference: text.to_string(),
        message: e.to_string(),
    })
}

/// Registries on the loopback interface are spoken to over plain HTTP (as
/// docker does); every other registry over HTTPS.
pub fn loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn client(r: &Reference) -> Client {
    // rustls needs its crypto chosen once per process; a second call is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let registry = r.resolve_registry().to_string();
    let protocol = if loopback(&registry) {
        ClientProtocol::HttpsExcept(vec![registry])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(120)),
        ..Default::default()
    })
}

/// One runtime per verb: the registry calls are async, the rest of hardroot is not.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(error::io_err("starting the I/O runtime", "-"))
}

/// The pause before attempt `n` (1, 2, 4 s).
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1 << attempt.saturating_sub(1).min(4))
}

/// An oci-client error as a sentence, and whether it was the credentials.
fn describe(e: &oci_client::errors::OciDistributionError) -> (String, bool) {
    use oci_client::errors::OciDistributionError as E;
    let unauthorized = matches!(e, E::AuthenticationFailure(_) | E::UnauthorizedError { .. })
        || matches!(e, E::ServerError { code, .. } if *code == 401 || *code == 403)
        || matches!(e, E::RequestError(r) if r.status().is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403));
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    (text, unauthorized)
}

/// Maps a failed call after its retries to the error a person acts on.
fn failed(
    r: &Reference,
    what: &str,
    attempts: u32,
    e: &oci_client::errors::OciDistributionError,
) -> OciError {
    let (message, unauthorized) = describe(e);
    if unauthorized {
        OciError::Unauthorized {
            registry: r.resolve_registry().to_string(),
            reference: r.whole(),
        }
    } else {
        OciError::Transfer {
            reference: r.whole(),
            what: what.to_string(),
            attempts,
            message,
        }
    }
}

/// Runs `call` until it succeeds, up to ATTEMPTS times with a growing pause;
/// refused credentials are not retried.
async fn with_retries<T, Fut>(r: &Reference, what: &str, mut call: impl FnMut() -> Fut) -> Result<T>
where
    Fut: std::future::Future<Output = oci_client::errors::Result<T>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if is_unauthorized(&e) || attempt >= ATTEMPTS => {
                return Err(failed(r, what, attempt, &e));
            }
            Err(e) => {
                eprintln!(
                    "    {what}: attempt {attempt} failed ({}); retrying",
                    describe(&e).0
                );
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
        }
    }
}

fn is_unauthorized(e: &oci_client::errors::OciDistributionError) -> bool {
    describe(e).1
}
