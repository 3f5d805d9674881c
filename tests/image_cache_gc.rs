//! `hardroot cache list` / `hardroot cache gc` on a cache of hand-made entries
//! (no mmdebstrap needed): order by last use, --keep, --older-than, an entry
//! whose lock is held survives, temp folders are never listed.
use std::fs::File;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

fn hardroot(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hardroot"))
        .arg("cache")
        .args(args)
        .arg("--cache")
        .arg(cache)
        .output()
        .expect("run hardroot cache")
}

/// An entry with a 1 MiB file, last used `days` ago (its lock file's mtime).
fn entry(cache: &Path, key: &str, days: u64) {
    let dir = cache.join("base").join(key);
    std::fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
    std::fs::write(dir.join("rootfs/etc/big"), vec![1u8; 1 << 20]).unwrap();
    let meta = format!(r#"{{"key":"{key}","inputs":{{"packages":["nginx","{key}-pkg"]}}}}"#);
    std::fs::write(dir.join("meta.json"), meta).unwrap();
    std::fs::create_dir_all(cache.join("locks")).unwrap();
    let lock = File::create(cache.join("locks").join(format!("{key}.lock"))).unwrap();
    let when = SystemTime::now() - Duration::from_secs(days * 86400);
    lock.set_modified(when).unwrap();
}

fn keys(cache: &Path) -> Vec<String> {
    let o = hardroot(cache, &["list", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    doc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn list_orders_by_last_use_and_hides_temp_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    entry(cache, "old", 40);
    entry(cache, "new", 0);
    entry(cache, "mid", 10);
    // A dead run's half-built base: removed by the leftovers cleaner, never listed.
    std::fs::create_dir_all(cache.join("base/.hrtmp-99999999-abc-x/rootfs")).unwrap();
    assert_eq!(keys(cache), ["new", "mid", "old"]);
    assert!(!cache.join("base/.hrtmp-99999999-abc-x").exists());
    let text = ok(&hardroot(cache, &["list"]));
    assert!(text.contains("nginx,mid-pkg"), "{text}");
    assert!(text.contains("3 entries"), "{text}");
}

#[test]
fn gc_keep_and_older_than_remove_only_what_they_say() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    for (k, d) in [("a", 0), ("b", 5), ("c", 20), ("d", 60)] {
        entry(cache, k, d);
    }
    let dry = ok(&hardroot(cache, &["gc", "--keep", "1", "--dry-run"]));
    assert!(dry.contains("would remove d"), "{dry}");
    assert_eq!(
        keys(cache),
        ["a", "b", "c", "d"],
        "dry run removed something"
    );

    ok(&hardroot(cache, &["gc", "--older-than", "30d"]));
    assert_eq!(keys(cache), ["a", "b", "c"]);
    assert!(!cache.join("base/d").exists());

    // Both options: beyond the newest one AND older than 10 days.
    ok(&hardroot(
        cache,
        &["gc", "--keep", "1", "--older-than", "10d"],
    ));
    assert_eq!(keys(cache), ["a", "b"]);
    ok(&hardroot(cache, &["gc", "--keep", "1"]));
    assert_eq!(keys(cache), ["a"]);
    let left: Vec<_> = std::fs::read_dir(cache.join("base")).unwrap().collect();
    assert_eq!(left.len(), 1, "gc left temp folders behind");
}

#[test]
fn gc_skips_an_entry_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    entry(cache, "busy", 50);
    entry(cache, "idle", 50);
    // What a running `hardroot image` holds while it reads the entry.
    let lock = File::options()
        .write(true)
        .open(cache.join("locks/busy.lock"))
        .unwrap();
    lock.lock_shared().unwrap();
    let text = ok(&hardroot(cache, &["gc", "--older-than", "1d"]));
    assert!(text.contains("kept busy: in use"), "{text}");
    assert_eq!(keys(cache), ["busy"]);
    // unlock, not just drop: a child another test thread forks at this moment
    // shares the open file (until its exec) and would keep the lock alive.
    lock.unlock().unwrap();
    ok(&hardroot(cache, &["gc", "--older-than", "1d"]));
    assert!(keys(cache).is_empty());
}

#[test]
fn gc_without_a_rule_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    entry(tmp.path(), "a", 50);
    let o = hardroot(tmp.path(), &["gc"]);
    assert_eq!(o.status.code(), Some(2), "a bad command line exits 2");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--keep <N>"));
    assert_eq!(keys(tmp.path()), ["a"]);
}
