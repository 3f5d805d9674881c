//! `hardroot pull REF -o DIR`: every file of the artifact, each checked
//! against the manifest's digest (and image-manifest.json's record) before
//! any of them is renamed into DIR.
use super::artifact::{self, ARTIFACT_TYPE, ImageManifest, TITLE};
use super::error::{OciError, Result, io_err};
use super::{ATTEMPTS, auth, backoff, client, failed, is_unauthorized, reference, runtime};
use futures_util::StreamExt;
use oci_client::client::BlobResponse;
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::io::Write;
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

pub struct PullRequest {
    pub reference: String,
    pub dir: PathBuf,
    pub quiet: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PulledFile {
    pub name: String,
    pub digest: String,
    pub size: u64,
    pub path: PathBuf,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Pulled {
    pub reference: String,
    pub digest: String,
    pub files: Vec<PulledFile>,
    pub annotations: std::collections::BTreeMap<String, String>,
}

pub fn pull(req: &PullRequest) -> Result<Pulled> {
    let r = reference(&req.reference)?;
    fetch(&r, &req.dir, ARTIFACT_TYPE, req.quiet)?.ok_or_else(|| OciError::Registry {
        reference: r.whole(),
        message: "the registry has no such artifact".into(),
        hint: "check the repository and tag; an interrupted push publishes nothing".into(),
    })
}

/// Fetches the artifact `r` names, which must be of `artifact_type`, into
/// DIR: every blob to a temp file, checked, then all renamed into place.
/// None when the registry has no such artifact. `pull` and the shared base
/// cache (bases.rs) both fetch this way.
pub(crate) fn fetch(
    r: &Reference,
    dir: &Path,
    artifact_type: &str,
    quiet: bool,
) -> Result<Option<Pulled>> {
    let auth = auth::for_registry(r.resolve_registry())?;
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    crate::image::leftovers::remove_dead(dir);
    runtime()?.block_on(async {
        let c = client(r);
        let Some((manifest, digest)) = fetch_manifest(&c, r, &auth, artifact_type).await? else {
            return Ok(None);
        };
        let mut temps = Vec::new();
        for layer in &manifest.layers {
            let name = title(r, layer)?;
            if !quiet {
                eprintln!("==> {name} ({} MiB) {}", layer.size >> 20, layer.digest);
            }
            let tmp = fetch_blob(&c, r, layer, dir, &name).await?;
            temps.push((name, layer, tmp));
        }
        cross_check(dir, &temps)?;
        let mut files = Vec::new();
        for (name, layer, tmp) in temps {
            let path = dir.join(&name);
            tmp.persist(&path)
                .map_err(|e| io_err("writing", &path)(e.error))?;
            files.push(PulledFile {
                name,
                digest: layer.digest.clone(),
                size: u64::try_from(layer.size).unwrap_or(0),
                path,
            });
        }
        Ok(Some(Pulled {
            reference: r.whole(),
            digest,
            files,
            annotations: manifest.annotations.clone().unwrap_or_default(),
        }))
    })
}

/// Whether the registry has an artifact of `artifact_type` under `r`.
pub(crate) fn exists(r: &Reference, artifact_type: &str) -> Result<bool> {
    let auth = auth::for_registry(r.resolve_registry())?;
    runtime()?.block_on(async {
        let c = client(r);
        Ok(fetch_manifest(&c, r, &auth, artifact_type).await?.is_some())
    })
}

/// The manifest `r` names and its digest; None when the registry has none.
async fn fetch_manifest(
    c: &Client,
    r: &Reference,
    auth: &RegistryAuth,
    artifact_type: &str,
) -> Result<Option<(OciImageManifest, String)>> {
    let mut attempt = 1;
    let (body, digest) = loop {
        match c
            .pull_manifest_raw(r, auth, &[artifact::MANIFEST_MEDIA_TYPE])
            .await
        {
            Ok(v) => break v,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) if is_unauthorized(&e) || attempt >= ATTEMPTS => {
                return Err(failed(r, "fetching the manifest", attempt, &e));
            }
            Err(_) => {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
        }
    };
    if super::push::sha256_of(&body) != digest && digest.starts_with("sha256:") {
        return Err(OciError::Digest {
            file: "the manifest".into(),
            expected: digest,
            actual: super::push::sha256_of(&body),
            source_of_truth: "the registry's Docker-Content-Digest",
        });
    }
    let m: OciImageManifest = serde_json::from_slice(&body).map_err(|e| OciError::Registry {
        reference: r.whole(),
        message: format!("not an OCI image manifest: {e}"),
        hint: "pull an artifact `hardroot push` made".into(),
    })?;
    if m.artifact_type.as_deref() != Some(artifact_type) {
        return Err(OciError::Registry {
            reference: r.whole(),
            message: format!(
                "artifact type {:?}, not {artifact_type}",
                m.artifact_type.as_deref().unwrap_or("(none)")
            ),
            hint: "pull an artifact `hardroot push` made".into(),
        });
    }
    Ok(Some((m, super::push::sha256_of(&body))))
}

fn not_found(e: &oci_client::errors::OciDistributionError) -> bool {
    use oci_client::errors::OciDistributionError as E;
    match e {
        E::ImageManifestNotFoundError(_) => true,
        E::ServerError { code, .. } => *code == 404,
        E::RegistryError { envelope, .. } => envelope.errors.iter().any(|x| {
            matches!(
                x.code,
                oci_client::errors::OciErrorCode::ManifestUnknown
                    | oci_client::errors::OciErrorCode::NameUnknown
                    | oci_client::errors::OciErrorCode::NotFound
            )
        }),
        _ => false,
    }
}

fn title(r: &Reference, layer: &OciDescriptor) -> Result<String> {
    let name = layer
        .annotations
        .as_ref()
        .and_then(|a| a.get(TITLE))
        .cloned()
        .unwrap_or_default();
    if !artifact::safe_name(&name) {
        return Err(OciError::Registry {
            reference: r.whole(),
            message: format!("layer {} has no usable file name ({name:?})", layer.digest),
            hint: "pull an artifact `hardroot push` made".into(),
        });
    }
    Ok(name)
}

/// Downloads one blob into a temp file in DIR, resuming at the byte it had
/// reached after a dropped connection; the whole file's sha256 must be the
/// layer's digest.
async fn fetch_blob(
    c: &Client,
    r: &Reference,
    layer: &OciDescriptor,
    dir: &Path,
    name: &str,
) -> Result<NamedTempFile> {
    let tmp = tempfile::Builder::new()
        .prefix(&crate::image::leftovers::prefix(name))
        .tempfile_in(dir)
        .map_err(io_err("creating a temp file in", dir))?;
    let size = u64::try_from(layer.size).unwrap_or(0);
    let mut attempt = 1;
    loop {
        let have = tmp
            .as_file()
            .metadata()
            .map_err(io_err("reading", tmp.path()))?
            .len();
        if have >= size && size > 0 || size == 0 && attempt > 1 {
            break;
        }
        match download(c, r, layer, &tmp, have).await {
            Ok(()) => {
                if size == 0 {
                    break;
                }
            }
            Err(e) if attempt >= ATTEMPTS => {
                return Err(match e {
                    Failure::Io(e) => e,
                    Failure::Net(e) => failed(r, &format!("downloading {name}"), attempt, &e),
                });
            }
            Err(Failure::Io(e)) => return Err(e),
            Err(Failure::Net(e)) if is_unauthorized(&e) => {
                return Err(failed(r, &format!("downloading {name}"), attempt, &e));
            }
            Err(Failure::Net(e)) => {
                eprintln!(
                    "    {name}: attempt {attempt} failed ({}); resuming",
                    super::describe(&e).0
                );
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
        }
    }
    let sha = crate::image::cache::sha256_file(tmp.path()).map_err(|e| OciError::Input {
        path: tmp.path().to_path_buf(),
        message: e.to_string(),
        hint: "check the disk".into(),
    })?;
    let actual = format!("sha256:{sha}");
    if actual != layer.digest {
        return Err(OciError::Digest {
            file: name.to_string(),
            expected: layer.digest.clone(),
            actual,
            source_of_truth: "the artifact's manifest",
        });
    }
    Ok(tmp)
}

enum Failure {
    Io(OciError),
    Net(oci_client::errors::OciDistributionError),
}

/// Appends the blob from byte `from` (a registry that ignores the range
/// sends it all: the file starts again).
async fn download(
    c: &Client,
    r: &Reference,
    layer: &OciDescriptor,
    tmp: &NamedTempFile,
    from: u64,
) -> std::result::Result<(), Failure> {
    let response = c
        .pull_blob_stream_partial(r, layer, from, None)
        .await
        .map_err(Failure::Net)?;
    let mut file = tmp.as_file();
    let mut stream = match response {
        BlobResponse::Partial(s) => s.stream,
        BlobResponse::Full(s) => {
            file.set_len(0)
                .map_err(|e| Failure::Io(io_err("writing", tmp.path())(e)))?;
            s.stream
        }
    };
    use std::io::Seek;
    file.seek(std::io::SeekFrom::End(0))
        .map_err(|e| Failure::Io(io_err("writing", tmp.path())(e)))?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Failure::Net(e.into()))?;
        file.write_all(&chunk)
            .map_err(|e| Failure::Io(io_err("writing", tmp.path())(e)))?;
    }
    file.flush()
        .map_err(|e| Failure::Io(io_err("writing", tmp.path())(e)))?;
    Ok(())
}

/// The pulled image-manifest.json's own records must agree with the blobs.
fn cross_check(dir: &Path, temps: &[(String, &OciDescriptor, NamedTempFile)]) -> Result<()> {
    let Some((_, _, m)) = temps.iter().find(|(n, _, _)| n == "image-manifest.json") else {
        return Ok(());
    };
    let text = std::fs::read_to_string(m.path()).map_err(io_err("reading", m.path()))?;
    let doc = serde_json::from_str(&text).map_err(|e| OciError::Input {
        path: dir.join("image-manifest.json"),
        message: format!("not an image manifest: {e}"),
        hint: "pull an artifact `hardroot push` made".into(),
    })?;
    let manifest = ImageManifest {
        path: dir.join("image-manifest.json"),
        doc,
    };
    for (name, layer, _) in temps {
        if let Some(recorded) = manifest.recorded(name)
            && format!("sha256:{recorded}") != layer.digest
        {
            return Err(OciError::Digest {
                file: name.clone(),
                expected: recorded,
                actual: layer.digest.clone(),
                source_of_truth: "image-manifest.json",
            });
        }
    }
    Ok(())
}
