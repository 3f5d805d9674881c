//! Golden-image hygiene rules on small hand-made trees (no root needed).
use hardroot::image::hygiene::{Scope, check};
use std::path::Path;

fn put(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, body).expect("write");
}

fn clean_root(root: &Path) {
    put(root, "etc/machine-id", "");
    put(
        root,
        "etc/shadow",
        "root:*:19675:0:99999:7:::\nsshd:!:19675::::::\nx:!*:1::::::\n",
    );
    put(root, "var/log/nginx/.keep-dir-only", "");
    put(
        root,
        "usr/bin/ssh-keygen",
        "binary mentions -----BEGIN OPENSSH PRIVATE KEY----- as a constant",
    );
}

#[test]
fn a_clean_root_passes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    clean_root(tmp.path());
    assert_eq!(
        check(tmp.path(), Scope::Root).expect("check"),
        Vec::<String>::new()
    );
}

#[test]
fn every_rule_names_the_offending_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = tmp.path();
    clean_root(r);
    put(r, "etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    put(
        r,
        "etc/shadow",
        "root:$y$j9T$abc$def:19675:0:99999:7:::\nguest::19675::::::\n",
    );
    put(r, "etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA");
    put(
        r,
        "etc/ssl/private/site.key",
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END EC PRIVATE KEY-----\n",
    );
    put(
        r,
        "var/lib/dbus/machine-id",
        "0123456789abcdef0123456789abcdef\n",
    );
    put(
        r,
        "var/lib/apt/lists/deb.example_dists_bookworm_InRelease",
        "x",
    );
    put(r, "var/cache/apt/pkgcache.bin", "x");
    put(r, "var/log/dpkg.log", "installed");
    put(r, "root/.bash_history", "ls\n");
    let bad = check(r, Scope::Root).expect("check");
    let expect = [
        "etc/machine-id: not empty",
        "etc/shadow: root has a password",
        "etc/shadow: guest has a password",
        "etc/ssh/ssh_host_ed25519_key.pub: SSH host key",
        "etc/ssl/private/site.key: contains a PEM private key",
        "var/lib/dbus/machine-id: must be absent or a symlink",
        "var/lib/apt/lists/deb.example_dists_bookworm_InRelease: apt list",
        "var/cache/apt/pkgcache.bin: apt cache",
        "var/log/dpkg.log: log file",
        "root/.bash_history: shell history",
    ];
    for e in expect {
        assert!(
            bad.iter().any(|b| b.starts_with(e)),
            "missing `{e}` in {bad:#?}"
        );
    }
    assert_eq!(bad.len(), expect.len(), "{bad:#?}");
}

#[test]
fn machine_id_must_exist_in_a_root_but_not_in_an_overlay() {
    let tmp = tempfile::tempdir().expect("tempdir");
    put(tmp.path(), "etc/motd", "hello\n");
    let root = check(tmp.path(), Scope::Root).expect("check");
    assert!(
        root.iter()
            .any(|b| b.starts_with("etc/machine-id: missing")),
        "{root:?}"
    );
    assert!(check(tmp.path(), Scope::Overlay).expect("check").is_empty());
}
