//! The shared base cache in a registry (`image --cache-from REF`,
//! `--cache-to REF`): REF is a repository; the base of key K is the artifact
//! REF:K (`artifactType` application/vnd.hardroot.base.v1, annotated with
//! the key, the package set, the kernel and SOURCE_DATE_EPOCH). It moves the
//! files the image stage packs (`image::shared`) with push's and pull's own
//! transfer code: streamed, retried, every blob checked against its digest.
use super::artifact::{self, BASE_ARTIFACT_TYPE, BASE_KERNEL, BASE_KEY, BASE_PACKAGES, File};
use super::error::{OciError, Result};
use super::{pull, push, reference};
use crate::image::shared::{ARCHIVE, BaseStore, META, Outgoing, Transfer};
use oci_client::Reference;
use std::collections::BTreeMap;
use std::path::Path;

/// A repository of bases, HOST[:PORT]/REPOSITORY.
#[derive(Debug, Clone)]
pub struct RegistryBases {
    repository: String,
}

impl RegistryBases {
    /// REF must name a repository: the tags are the base keys.
    pub fn new(text: &str) -> Result<RegistryBases> {
        let last = text.rsplit('/').next().unwrap_or(text);
        if !text.contains('/') || last.contains([':', '@']) {
            return Err(OciError::Reference {
                reference: text.to_string(),
                message: "--cache-from and --cache-to take a repository without a tag or \
                          digest (each base is tagged with its key)"
                    .into(),
            });
        }
        reference(&format!("{text}:probe"))?;
        Ok(RegistryBases {
            repository: text.to_string(),
        })
    }

    fn reference(&self, key: &str) -> Result<Reference> {
        reference(&format!("{}:{key}", self.repository))
    }

    fn fetch_checked(&self, key: &str, dir: &Path) -> Result<Option<Transfer>> {
        let r = self.reference(key)?;
        let Some(pulled) = pull::fetch(&r, dir, BASE_ARTIFACT_TYPE, true)? else {
            return Ok(None);
        };
        let claimed = pulled.annotations.get(BASE_KEY).map(String::as_str);
        if claimed != Some(key) {
            return Err(OciError::Registry {
                reference: r.whole(),
                message: format!(
                    "the artifact tagged {key} says it is the base {}",
                    claimed.unwrap_or("(no key)")
                ),
                hint: "the tag names another base; push it again with --cache-to".into(),
            });
        }
        for name in [META, ARCHIVE] {
            if !pulled.files.iter().any(|f| f.name == name) {
                return Err(OciError::Registry {
                    reference: r.whole(),
                    message: format!("the base has no {name}"),
                    hint: "push it again with --cache-to".into(),
                });
            }
        }
        Ok(Some(Transfer {
            reference: r.whole(),
            digest: pulled.digest,
            bytes: pulled.files.iter().map(|f| f.size).sum(),
        }))
    }

    fn store_base(&self, base: &Outgoing) -> Result<Transfer> {
        let r = self.reference(base.key)?;
        let files: Vec<File> = [(META, &base.meta), (ARCHIVE, &base.archive)]
            .into_iter()
            .map(|(name, path)| File {
                name: name.to_string(),
                path: path.clone(),
                media_type: artifact::media_type(name),
                recorded_sha256: None,
            })
            .collect();
        let mut annotations = BTreeMap::from([
            (BASE_KEY.to_string(), base.key.to_string()),
            (BASE_PACKAGES.to_string(), base.packages.join(" ")),
            (BASE_KERNEL.to_string(), base.kernel.to_string()),
        ]);
        artifact::dated(&mut annotations, base.source_date_epoch);
        let pushed = push::publish(&r, &files, BASE_ARTIFACT_TYPE, annotations, true)?;
        Ok(Transfer {
            reference: pushed.reference,
            digest: pushed.digest,
            bytes: pushed.bytes_uploaded,
        })
    }
}

impl BaseStore for RegistryBases {
    fn location(&self, key: &str) -> String {
        format!("{}:{key}", self.repository)
    }

    fn fetch(
        &self,
        key: &str,
        dir: &Path,
    ) -> std::result::Result<Option<Transfer>, miette::Report> {
        self.fetch_checked(key, dir).map_err(miette::Report::new)
    }

    fn contains(&self, key: &str) -> std::result::Result<bool, miette::Report> {
        let r = self.reference(key)?;
        Ok(pull::exists(&r, BASE_ARTIFACT_TYPE)?)
    }

    fn store(&self, base: &Outgoing) -> std::result::Result<Transfer, miette::Report> {
        self.store_base(base).map_err(miette::Report::new)
    }
}

#[cfg(test)]
mod tests {
    use super::RegistryBases;

    #[test]
    fn the_shared_cache_is_a_repository_whose_tags_are_base_keys() {
        assert!(RegistryBases::new("127.0.0.1:5000/fleet/base").is_ok());
        assert!(RegistryBases::new("registry.example.org/team/bases").is_ok());
        for bad in [
            "127.0.0.1:5000/fleet/base:latest",
            "127.0.0.1:5000/fleet/base@sha256:00",
            "bases",
            "127.0.0.1:5000/Upper/Case",
        ] {
            assert!(RegistryBases::new(bad).is_err(), "{bad} accepted");
        }
    }
}
