//! The base cache shared between builders through a registry (`image
//! --cache-from REF`, `--cache-to REF`). The image stage decides what a
//! cached base becomes on the way out and what one must satisfy on the way
//! in; the registry layer (`src/oci/bases.rs`) only moves the files, behind
//! the `BaseStore` trait, so the image stage never depends on the registry
//! layer (ARCHITECTURE.md: the CLI hands it the store).
//!
//! A base travels as two files: `meta.json` (the entry's own: key inputs,
//! packages, paths) and `base.tar.zst` (rootfs/, base.img, vmlinuz,
//! initrd.img; GNU tar keeps owners, modes, xattrs, ACLs, hard links and
//! holes, in name order, zstd-compressed). A fetched base is unpacked into a
//! temp folder in the cache and renamed into place under the key's exclusive
//! lock, like a bootstrapped one, and only after its meta.json says it is the
//! key asked for and its key inputs hash to that key. Anything else is
//! refused with a warning, and the base is bootstrapped instead.
use super::base::BaseMeta;
use super::cache::{Cache, KeyInputs};
use super::error::{ImageError, Result, input_err, io_err};
use super::progress::{self, Step};
use super::tools;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The entry's description, sent as is.
pub const META: &str = "meta.json";
/// Everything else of the entry, in one archive.
pub const ARCHIVE: &str = "base.tar.zst";
/// What of an entry travels in the archive (its `disk-*` layouts do not:
/// they are packed from rootfs/ when a profile needs them).
const PACKED: [&str; 4] = ["rootfs", "base.img", "vmlinuz", "initrd.img"];

/// A store of bases beyond this machine, by key.
pub trait BaseStore: Send + Sync + std::fmt::Debug {
    /// Where the base of `key` lives, for messages (REPOSITORY:KEY).
    fn location(&self, key: &str) -> String;
    /// Downloads the base of `key` into `dir` (META and ARCHIVE, each checked
    /// against the store's digest); None when the store has no such base.
    fn fetch(&self, key: &str, dir: &Path)
    -> std::result::Result<Option<Transfer>, miette::Report>;
    /// Whether the store has a base of `key`.
    fn contains(&self, key: &str) -> std::result::Result<bool, miette::Report>;
    /// Uploads a packed base.
    fn store(&self, base: &Outgoing) -> std::result::Result<Transfer, miette::Report>;
}

/// A packed base on its way to a store.
pub struct Outgoing<'a> {
    pub key: &'a str,
    /// The package set asked for (the key's inputs), not every installed package.
    pub packages: &'a [String],
    pub kernel: &'a str,
    pub source_date_epoch: i64,
    pub meta: PathBuf,
    pub archive: PathBuf,
}

/// One base moved to or from a store.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Transfer {
    /// REPOSITORY:KEY
    pub reference: String,
    /// The artifact's manifest digest.
    pub digest: String,
    /// Bytes downloaded, or uploaded (0 when the store had every blob).
    pub bytes: u64,
}

/// `--cache-from` and `--cache-to`: where a missing base may come from, and
/// where a base this builder has goes when the store lacks it.
#[derive(Debug, Clone, Default)]
pub struct SharedCache {
    pub from: Option<Arc<dyn BaseStore>>,
    pub to: Option<Arc<dyn BaseStore>>,
}

/// What came of asking the shared cache for a base.
#[derive(Debug)]
pub enum Fetched {
    /// In the local cache now.
    Pulled(Transfer),
    /// The shared cache has no base of that key.
    Missing,
    /// It could not be fetched, or was not the base asked for (why, also said
    /// on stderr as a warning); nothing was kept.
    Refused(String),
}

/// The base of `key` from the store into the cache (the caller holds the
/// key's exclusive lock). Anything but `Pulled`: the caller bootstraps.
pub fn fetch(cache: &Cache, store: &dyn BaseStore, key: &str, quiet: bool) -> Result<Fetched> {
    tools::require(tools::TAR)?;
    tools::require(tools::ZSTD)?;
    let where_ = store.location(key);
    let step = Step::start(
        "pull_base",
        format!("pulling the base from {where_}"),
        quiet,
    );
    let tmp = temp_dir(cache, key)?;
    let download = tmp.path().join(".download");
    let transfer = match store.fetch(key, &download) {
        Ok(Some(t)) => t,
        Ok(None) => {
            step.done("not there: bootstrapping");
            return Ok(Fetched::Missing);
        }
        Err(e) => {
            drop(step);
            return Ok(refused(&format!("{where_} could not be fetched"), &e));
        }
    };
    if let Err(e) = unpack(key, &where_, &download, tmp.path()) {
        drop(step);
        return Ok(refused(
            &format!("{where_} was refused"),
            &miette::Report::new(e),
        ));
    }
    std::fs::remove_dir_all(&download).map_err(io_err("removing", &download))?;
    super::base::publish(cache, tmp, key)?;
    step.done(&format!(
        "pulled {} MiB, {}",
        transfer.bytes >> 20,
        transfer.digest
    ));
    Ok(Fetched::Pulled(transfer))
}

/// When `store` sends a base whose key the store already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Only when the store lacks the key.
    IfMissing,
    /// In any case: the base was refreshed, and what the store holds under
    /// that key is the one the archive has moved past (every builder that
    /// pulled it would refresh it again).
    Replace,
}

/// Sends the cached base of `key` to the store as `push` says. The caller
/// holds the key's exclusive lock, so the entry is whole.
pub fn store(
    cache: &Cache,
    store: &dyn BaseStore,
    key: &str,
    push: Push,
    quiet: bool,
) -> Result<Option<Transfer>> {
    let where_ = store.location(key);
    let registry_err = |e: miette::Report| ImageError::SharedCache {
        location: where_.clone(),
        message: format!("{e:?}"),
    };
    if push == Push::IfMissing && store.contains(key).map_err(registry_err)? {
        return Ok(None);
    }
    tools::require(tools::TAR)?;
    tools::require(tools::ZSTD)?;
    let step = Step::start("push_base", format!("pushing the base to {where_}"), quiet);
    let entry = cache.entry(key);
    let meta = super::base::read_meta(&entry)?;
    let inputs: KeyInputs = inputs_of(&meta, &entry.join(META))?;
    let tmp = temp_dir(cache, key)?;
    let archive = tmp.path().join(ARCHIVE);
    pack(&entry, &archive)?;
    let transfer = store
        .store(&Outgoing {
            key,
            packages: &inputs.packages,
            kernel: &meta.kernel,
            source_date_epoch: meta.source_date_epoch,
            meta: entry.join(META),
            archive,
        })
        .map_err(registry_err)?;
    step.done(&format!(
        "sent {} MiB, {}",
        transfer.bytes >> 20,
        transfer.digest
    ));
    Ok(Some(transfer))
}

fn refused(what: &str, e: &miette::Report) -> Fetched {
    progress::warn(&format!(
        "{what}:\n{e:?}\n    bootstrapping the base instead"
    ));
    Fetched::Refused(format!("{what}: {e}"))
}

fn temp_dir(cache: &Cache, key: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&super::leftovers::prefix(key))
        .tempdir_in(cache.base_dir())
        .map_err(io_err("creating a temp folder in", cache.base_dir()))
}

/// The flags both ends of the archive agree on: numeric owners, extended
/// attributes (file capabilities), ACLs, zstd.
const TAR_COMMON: [&str; 5] = [
    "--numeric-owner",
    "--xattrs",
    "--xattrs-include=*",
    "--acls",
    "--zstd",
];

/// ENTRY's files into ARCHIVE, in name order with no per-run headers, so one
/// base packs to the same bytes on every builder.
fn pack(entry: &Path, archive: &Path) -> Result<()> {
    let mut cmd = tools::command(tools::TAR.0);
    cmd.arg("--create")
        .arg("--file")
        .arg(archive)
        .arg("--directory")
        .arg(entry)
        .args([
            "--sort=name",
            "--format=posix",
            "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
            "--sparse",
        ])
        .args(TAR_COMMON)
        .arg("--")
        .args(PACKED);
    tools::run(&mut cmd).map(|_| ())
}

/// Checks the fetched META against `key`, then unpacks ARCHIVE into DEST
/// and checks that it holds a whole entry. Errors name the file by where it
/// came from (`location`), not by its temp path.
fn unpack(key: &str, location: &str, download: &Path, dest: &Path) -> Result<()> {
    let meta_path = download.join(META);
    let named = |f: &str| PathBuf::from(format!("{location} {f}"));
    let meta = super::base::parse_meta(
        &meta_path,
        &named(META),
        "not a base's meta.json",
        "the registry holds a damaged base; push it again with --cache-to",
    )?;
    check_key(key, &meta, &named(META))?;
    let mut cmd = tools::command(tools::TAR.0);
    cmd.arg("--extract")
        .arg("--file")
        .arg(download.join(ARCHIVE))
        .arg("--directory")
        .arg(dest)
        .args(["--same-owner", "--same-permissions"])
        .args(TAR_COMMON);
    tools::run(&mut cmd)?;
    for name in PACKED {
        if !dest.join(name).exists() {
            return Err(input_err(
                named(ARCHIVE),
                format!("the fetched base has no {name}"),
                "the registry holds a damaged base; push it again with --cache-to",
            ));
        }
    }
    std::fs::rename(&meta_path, dest.join(META)).map_err(io_err("moving", &meta_path))
}

/// A fetched base must be the one asked for: its meta.json names the key,
/// and the inputs it records hash to it (a base pushed under another key,
/// or with edited inputs, is refused).
fn check_key(key: &str, meta: &BaseMeta, path: &Path) -> Result<()> {
    if meta.key != key {
        return Err(input_err(
            path,
            format!(
                "the fetched base is {}, not the base {key} asked for",
                meta.key
            ),
            "the registry's tag names another base; push it again with --cache-to",
        ));
    }
    let inputs = inputs_of(meta, path)?;
    let actual = inputs.key();
    if actual != key {
        return Err(input_err(
            path,
            format!("the fetched base's inputs hash to {actual}, not to its key {key}"),
            "the registry holds a damaged or altered base; push it again with --cache-to",
        ));
    }
    Ok(())
}

fn inputs_of(meta: &BaseMeta, path: &Path) -> Result<KeyInputs> {
    serde_json::from_value(meta.inputs.clone()).map_err(|e| {
        input_err(
            path,
            format!("the base's key inputs are unreadable: {e}"),
            "the base was made by another version of hardroot; bootstrap it here",
        )
    })
}
