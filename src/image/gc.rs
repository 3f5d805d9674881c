//! `hardroot cache list` and `hardroot cache gc`: the base cache grows by one
//! entry (~1–2 GiB) per package set; this shows and prunes it. An entry's
//! last use is the mtime of its lock file, set each time an image is built
//! from it. An entry in use (its lock held by a running `image`) is never
//! removed: gc takes the lock exclusively without waiting, or skips it.
use super::cache::Cache;
use super::error::{Result, input_err, io_err};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    pub key: String,
    pub bytes: u64,
    /// Seconds since the epoch.
    pub last_used: u64,
    pub packages: Vec<String>,
    #[serde(skip)]
    pub dir: PathBuf,
}

/// Every published entry, most recently used first.
pub fn entries(cache: &Cache) -> Result<Vec<Entry>> {
    let base = cache.base_dir();
    let mut out = Vec::new();
    for e in std::fs::read_dir(&base).map_err(io_err("reading", &base))? {
        let e = e.map_err(io_err("reading", &base))?;
        let key = e.file_name().to_string_lossy().into_owned();
        if key.starts_with('.') || !e.path().join("meta.json").is_file() {
            continue; // temp folders are the leftovers cleaner's
        }
        out.push(entry(cache, key, e.path()));
    }
    out.sort_by(|a, b| (b.last_used, &a.key).cmp(&(a.last_used, &b.key)));
    Ok(out)
}

fn entry(cache: &Cache, key: String, dir: PathBuf) -> Entry {
    let used = [cache.lock_path(&key), dir.clone()]
        .iter()
        .find_map(|p| p.metadata().and_then(|m| m.modified()).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Entry {
        bytes: disk_usage(&dir),
        last_used: epoch_secs(used),
        packages: packages(&dir),
        key,
        dir,
    }
}

pub fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Allocated bytes of a tree (holes in base.img cost nothing).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

/// The profile's package list the entry was built for (meta.json inputs).
fn packages(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("meta.json")).unwrap_or_default();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    doc.pointer("/inputs/packages")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Entries to remove: beyond the `keep` most recent and/or older than `age`.
pub fn select(
    entries: &[Entry],
    keep: Option<usize>,
    age: Option<Duration>,
    now: SystemTime,
) -> Vec<Entry> {
    let cutoff = age.map(|a| epoch_secs(now).saturating_sub(a.as_secs()));
    entries
        .iter()
        .enumerate()
        .filter(|(i, e)| keep.is_none_or(|k| *i >= k) && cutoff.is_none_or(|c| e.last_used < c))
        .map(|(_, e)| e.clone())
        .collect()
}

/// Removes one entry if nobody holds its lock; false if somebody does.
pub fn remove(cache: &Cache, e: &Entry) -> Result<bool> {
    let Some(_lock) = cache.try_lock(&e.key)? else {
        return Ok(false);
    };
    // Out of sight first (one rename), so no reader ever sees half an entry.
    let aside = cache
        .base_dir()
        .join(format!("{}{}", super::leftovers::prefix("gc"), e.key));
    std::fs::rename(&e.dir, &aside).map_err(io_err("moving aside", &e.dir))?;
    if !super::leftovers::mounts_below(&aside).is_empty() {
        return Err(input_err(
            &aside,
            "something is mounted inside this cache entry",
            "unmount it (see /proc/self/mountinfo), then run gc again",
        ));
    }
    std::fs::remove_dir_all(&aside).map_err(io_err("removing", &aside))?;
    Ok(true)
}

/// "30d", "12h", "90m", "45s" (a bare number is days).
pub fn parse_age(text: &str) -> std::result::Result<Duration, String> {
    let (num, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "d"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not an age like 30d, 12h, 90m"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("unknown unit in `{text}`: use s, m, h or d")),
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(key: &str, last_used: u64) -> Entry {
        Entry {
            key: key.into(),
            bytes: 1,
            last_used,
            packages: vec![],
            dir: PathBuf::new(),
        }
    }

    #[test]
    fn ages_parse_with_units() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_age("2"), Ok(Duration::from_secs(2 * 86400)));
        assert_eq!(parse_age("90m"), Ok(Duration::from_secs(5400)));
        assert!(parse_age("3w").is_err());
        assert!(parse_age("h").is_err());
        assert!(parse_age("99999999999999999999d").is_err());
    }

    #[test]
    fn selection_keeps_the_newest_and_the_young() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100 * 86400);
        let day = 86400;
        // Most recent first, as `entries` returns them.
        let all = [e("a", 99 * day), e("b", 90 * day), e("c", 10 * day)];
        let keys = |v: Vec<Entry>| v.into_iter().map(|e| e.key).collect::<Vec<_>>();
        assert_eq!(keys(select(&all, Some(1), None, now)), ["b", "c"]);
        assert_eq!(
            keys(select(&all, None, Some(Duration::from_secs(5 * day)), now)),
            ["b", "c"]
        );
        assert_eq!(
            keys(select(
                &all,
                Some(2),
                Some(Duration::from_secs(5 * day)),
                now
            )),
            ["c"]
        );
        assert!(select(&all, Some(3), None, now).is_empty());
    }
}
