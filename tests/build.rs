//! `hardroot build` end to end on the fixture profile: reproducible bytes,
//! exact modes and links, atomic replacement of OUT, and the other verbs.
use crate::common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn profile() -> String {
    fixtures().join("profiles/p.toml").display().to_string()
}

/// Builds under a given umask, TZ and locale, from a given working directory.
fn build_with(cwd: &Path, out: &Path, umask: &str, tz: &str, lang: &str) {
    let script = format!("umask {umask}; exec \"$0\" build \"$1\" -o \"$2\"");
    let o = Command::new("sh")
        .args([
            "-c",
            &script,
            bin().to_str().unwrap_or_default(),
            &profile(),
            out.to_str().unwrap_or_default(),
        ])
        .current_dir(cwd)
        .env("TZ", tz)
        .env("LANG", lang)
        .env("LC_ALL", lang)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("run");
    assert!(o.status.success(), "build failed: {}", text(&o.stderr));
}

#[test]
fn same_bytes_whatever_the_directory_umask_timezone_and_locale() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let out_a = a.path().join("deep/one/out");
    let out_b = b.path().join("other");
    build_with(a.path(), &out_a, "022", "UTC", "C");
    std::thread::sleep(std::time::Duration::from_millis(1100)); // a different second on the clock
    build_with(b.path(), &out_b, "077", "Pacific/Chatham", "de_DE.UTF-8");
    for f in ["overlay.tar.gz", "manifest.json", "config.json"] {
        assert_eq!(
            sha256_file(&out_a.join(f)),
            sha256_file(&out_b.join(f)),
            "{f} differs between builds"
        );
    }
    // umask 077 must not leak into the overlay: modes come from the modules.
    let mode = std::fs::metadata(out_b.join("overlay/etc/svc.conf"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o640);
    let mode = std::fs::metadata(out_b.join("overlay/var/lib/fw"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o700);
}

#[test]
fn gzip_header_has_no_time_and_no_name() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    build_with(t.path(), &out, "022", "UTC", "C");
    let bytes = std::fs::read(out.join("overlay.tar.gz")).unwrap();
    assert_eq!(&bytes[..3], &[0x1f, 0x8b, 8], "gzip magic + deflate");
    assert_eq!(bytes[3] & 0x08, 0, "FNAME flag set");
    assert_eq!(&bytes[4..8], &[0, 0, 0, 0], "gzip mtime not zero");
}

#[test]
fn tarball_lists_sorted_entries_with_owners_and_epoch() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    build_with(t.path(), &out, "022", "UTC", "C");
    let o = Command::new("tar")
        .args(["--numeric-owner", "-tvzf"])
        .arg(out.join("overlay.tar.gz"))
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let listing = text(&o.stdout);
    let names: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| n.trim_end_matches('/').to_string());
    assert_eq!(names, sorted);
    assert!(
        listing.lines().all(|l| l.contains("2024-01-01 00:00")),
        "mtime not clamped:\n{listing}"
    );
    assert!(
        listing.contains("-rw-r----- 0/0") && listing.contains("etc/svc.conf"),
        "{listing}"
    );
    let o = Command::new("tar")
        .args(["-tvzf"])
        .arg(out.join("overlay.tar.gz"))
        .output()
        .unwrap();
    assert!(
        text(&o.stdout).contains("www-data/root"),
        "owner names kept for the image stage"
    );
    assert!(text(&o.stdout).contains(
        "etc/systemd/system/sysinit.target.wants/fw.service -> /etc/systemd/system/fw.service"
    ));
    assert!(text(&o.stdout).contains("etc/systemd/system/rpcbind.service -> /dev/null"));
}

#[test]
fn failed_build_leaves_previous_output_untouched() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    build_with(t.path(), &out, "022", "UTC", "C");
    let before = sha256_file(&out.join("manifest.json"));
    let bad = t.path().join("bad.toml");
    std::fs::write(&bad, "[profile]\nimports = [\"svc\"]\n[svc]\nport = 0\n").unwrap();
    let fixture_modules = fixtures().join("modules");
    let o = hardroot(
        t.path(),
        &[
            "build",
            "bad.toml",
            "-o",
            "out",
            "--modules",
            fixture_modules.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("bad.toml:4:8"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(sha256_file(&out.join("manifest.json")), before);
    let leftovers: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("building"))
        .collect();
    assert!(leftovers.is_empty(), "staging folders left behind");
}

#[test]
fn rebuild_replaces_output_and_refuses_foreign_folders() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    build_with(t.path(), &out, "022", "UTC", "C");
    std::fs::write(out.join("stale-file"), "old").unwrap();
    build_with(t.path(), &out, "022", "UTC", "C");
    assert!(!out.join("stale-file").exists(), "old output not replaced");
    let foreign = t.path().join("home");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("thesis.tex"), "precious").unwrap();
    let o = hardroot(t.path(), &["build", &profile(), "-o", "home"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("not a hardroot output"));
    assert_eq!(
        std::fs::read_to_string(foreign.join("thesis.tex")).unwrap(),
        "precious"
    );
}

#[test]
fn check_writes_nothing_and_reports_ok() {
    let t = tempfile::tempdir().unwrap();
    let o = hardroot(t.path(), &["check", &profile()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("every assertion holds"));
    assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
}

#[test]
fn explain_names_definitions_and_blames_lines() {
    let t = tempfile::tempdir().unwrap();
    let o = hardroot(t.path(), &["explain", &profile(), "svc.port"]);
    let s = text(&o.stdout);
    assert!(s.contains("svc.port = 8443"), "{s}");
    assert!(s.contains("[overridden] module svc (default)"), "{s}");
    assert!(s.contains("[used] profile p"), "{s}");
    assert!(s.contains("/etc/svc.conf"), "{s}");
    let o = hardroot(t.path(), &["explain", &profile(), "/etc/iptables/rules.v4"]);
    let s = text(&o.stdout);
    assert!(s.contains("made by module fw"), "{s}");
    let line = s
        .lines()
        .find(|l| l.contains("--dport 6443"))
        .unwrap_or_default();
    assert!(
        line.contains("module svc") && line.contains("profile p"),
        "trusted rule must be blamed on svc's listener and the profile's CIDR: {line}"
    );
}

#[test]
fn diff_shows_changed_files_with_a_unified_diff() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    build_with(t.path(), &a, "022", "UTC", "C");
    let p2 = t.path().join("p2.toml");
    std::fs::write(
        &p2,
        format!(
            "[profile]\nimports = [\"{}\"]\n[force.svc]\nport = 9443\n",
            profile()
        ),
    )
    .unwrap();
    let o = hardroot(t.path(), &["build", "p2.toml", "-o", "b"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = hardroot(t.path(), &["diff", "a", "b"]);
    let s = text(&o.stdout);
    assert!(s.contains("changed  /etc/svc.conf"), "{s}");
    assert!(
        s.contains("-listen 8443;") && s.contains("+listen 9443;"),
        "{s}"
    );
}

#[test]
fn profile_lists_add_to_module_lists_and_force_replaces_them() {
    let t = tempfile::tempdir().unwrap();
    let add = format!(
        "[profile]\nimports = [\"{}\"]\n[fw]\nlisteners = [{{ service = \"extra\", port = 7000, exposure = \"public\" }}]\n",
        profile()
    );
    std::fs::write(t.path().join("add.toml"), add).unwrap();
    let o = hardroot(t.path(), &["build", "add.toml", "-o", "add"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rules =
        std::fs::read_to_string(t.path().join("add/overlay/etc/iptables/rules.v4")).unwrap();
    assert!(
        rules.contains("--dport 8443") && rules.contains("--dport 7000"),
        "module rows and the profile's row:\n{rules}"
    );
    let force = format!(
        "[profile]\nimports = [\"{}\"]\n[force.fw]\nlisteners = [{{ service = \"only\", port = 7001, exposure = \"public\" }}]\n",
        profile()
    );
    std::fs::write(t.path().join("force.toml"), force).unwrap();
    let o = hardroot(t.path(), &["build", "force.toml", "-o", "force"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rules =
        std::fs::read_to_string(t.path().join("force/overlay/etc/iptables/rules.v4")).unwrap();
    assert!(
        rules.contains("--dport 7001") && !rules.contains("--dport 8443"),
        "force replaces:\n{rules}"
    );
}
