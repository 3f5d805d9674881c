//! `hardroot push DIR REF`: the image folder as one artifact.
use super::artifact::{self, ARTIFACT_TYPE, EMPTY_CONFIG, EMPTY_MEDIA_TYPE, File, TITLE};
use super::error::{OciError, Result, io_err};
use super::{auth, client, reference, runtime, with_retries};
use futures_util::stream::{self, Stream};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokio::io::AsyncReadExt;

/// Bytes read from disk and sent per chunk (PATCH): never a whole blob in memory.
const CHUNK: usize = 4 << 20;

pub struct PushRequest {
    pub dir: PathBuf,
    pub reference: String,
    /// The acceptance report (HTML) to publish with the image.
    pub report: Option<PathBuf>,
    pub quiet: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PushedFile {
    pub name: String,
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    /// False when the registry had the blob already (nothing sent).
    pub uploaded: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Pushed {
    pub reference: String,
    /// sha256 of the manifest: pull REPOSITORY@DIGEST gets exactly this.
    pub digest: String,
    pub files: Vec<PushedFile>,
    pub bytes_uploaded: u64,
    pub annotations: BTreeMap<String, String>,
}

pub fn push(req: &PushRequest) -> Result<Pushed> {
    let r = reference(&req.reference)?;
    let (manifest, files) = artifact::files(&req.dir, req.report.as_deref())?;
    let annotations = manifest.annotations()?;
    publish(&r, &files, ARTIFACT_TYPE, annotations, req.quiet)
}

/// Uploads `files` as one artifact of `artifact_type` under `r`: each file
/// a layer (streamed, retried, skipped when the registry has it), then the
/// manifest. `push` and the shared base cache (bases.rs) both send this way.
pub(crate) fn publish(
    r: &Reference,
    files: &[File],
    artifact_type: &str,
    annotations: BTreeMap<String, String>,
    quiet: bool,
) -> Result<Pushed> {
    let mut hashed = Vec::new();
    for f in files {
        hashed.push(hash(f)?);
    }
    let auth = auth::for_registry(r.resolve_registry())?;
    runtime()?.block_on(async {
        let c = client(r);
        with_retries(r, "logging in", || {
            c.auth(r, &auth, RegistryOperation::Push)
        })
        .await?;
        let mut pushed = Vec::new();
        let mut layers = Vec::new();
        for (f, (digest, size)) in files.iter().zip(&hashed) {
            if !quiet {
                eprintln!("==> {} ({} MiB) {digest}", f.name, size >> 20);
            }
            let uploaded = push_file(&c, r, &auth, &f.path, digest, *size).await?;
            layers.push(OciDescriptor {
                media_type: f.media_type.to_string(),
                digest: digest.clone(),
                size: i64::try_from(*size).unwrap_or(i64::MAX),
                annotations: Some(BTreeMap::from([(TITLE.to_string(), f.name.clone())])),
                ..Default::default()
            });
            pushed.push(PushedFile {
                name: f.name.clone(),
                media_type: f.media_type.to_string(),
                digest: digest.clone(),
                size: *size,
                uploaded,
            });
        }
        let config_digest = sha256_of(EMPTY_CONFIG);
        push_small(&c, r, EMPTY_CONFIG, &config_digest).await?;
        let doc = OciImageManifest {
            media_type: Some(artifact::MANIFEST_MEDIA_TYPE.to_string()),
            artifact_type: Some(artifact_type.to_string()),
            config: OciDescriptor {
                media_type: EMPTY_MEDIA_TYPE.to_string(),
                digest: config_digest,
                size: EMPTY_CONFIG.len() as i64,
                ..Default::default()
            },
            layers,
            annotations: Some(annotations.clone()),
            ..Default::default()
        };
        let body = serde_json::to_vec(&doc).map_err(|e| OciError::Registry {
            reference: r.whole(),
            message: format!("cannot write the manifest: {e}"),
            hint: "this is a bug in hardroot".into(),
        })?;
        let digest = sha256_of(&body);
        push_manifest(&c, r, &body).await?;
        Ok(Pushed {
            reference: r.whole(),
            digest,
            bytes_uploaded: pushed.iter().filter(|p| p.uploaded).map(|p| p.size).sum(),
            files: pushed,
            annotations,
        })
    })
}

/// sha256 and size of a file to push; it must be what image-manifest.json records.
fn hash(f: &File) -> Result<(String, u64)> {
    let size = std::fs::metadata(&f.path)
        .map_err(io_err("reading", &f.path))?
        .len();
    let sha = crate::image::cache::sha256_file(&f.path).map_err(|e| OciError::Input {
        path: f.path.clone(),
        message: e.to_string(),
        hint: "check that the image folder is complete".into(),
    })?;
    if let Some(recorded) = &f.recorded_sha256
        && recorded != &sha
    {
        return Err(OciError::Digest {
            file: f.path.display().to_string(),
            expected: recorded.clone(),
            actual: sha,
            source_of_truth: "image-manifest.json",
        });
    }
    Ok((format!("sha256:{sha}"), size))
}

pub fn sha256_of(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        crate::image::cache::hex(&Sha256::digest(bytes))
    )
}

/// Uploads a file unless the registry has its blob; a dropped connection
/// starts the blob's upload again (a new session: the registry never commits
/// a blob whose bytes do not hash to its digest). Returns whether it sent it.
async fn push_file(
    c: &Client,
    r: &Reference,
    auth: &RegistryAuth,
    path: &Path,
    digest: &str,
    size: u64,
) -> Result<bool> {
    let what = format!("uploading {}", path.display());
    with_retries(r, &what, || async move {
        if c.blob_exists(r, digest).await? {
            return Ok(false);
        }
        // A restarted registry knows no earlier token.
        c.auth(r, auth, RegistryOperation::Push).await?;
        let file = tokio::fs::File::open(path).await?;
        c.push_blob_stream(r, chunks(file), digest, Some(size))
            .await?;
        Ok(true)
    })
    .await
}

/// A file as a stream of CHUNK-sized pieces, read as they are sent.
fn chunks(
    file: tokio::fs::File,
) -> impl Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static {
    stream::try_unfold(file, |mut f| async move {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            let n = f.read(&mut buf[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Ok(None);
        }
        buf.truncate(filled);
        Ok(Some((bytes::Bytes::from(buf), f)))
    })
}

async fn push_small(c: &Client, r: &Reference, data: &[u8], digest: &str) -> Result<()> {
    with_retries(r, "uploading the config", || async move {
        if !c.blob_exists(r, digest).await? {
            c.push_blob(r, data.to_vec(), digest).await?;
        }
        Ok(())
    })
    .await
}

/// The manifest goes last: until it is in, the tag names nothing new.
async fn push_manifest(c: &Client, r: &Reference, body: &[u8]) -> Result<()> {
    let content_type = http::HeaderValue::from_static(artifact::MANIFEST_MEDIA_TYPE);
    with_retries(r, "pushing the manifest", || {
        let content_type = content_type.clone();
        async move {
            c.push_manifest_raw(r, body.to_vec(), content_type)
                .await
                .map(|_| ())
        }
    })
    .await
}
