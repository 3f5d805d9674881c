//! flake.nix's dev shell and scripts/deps.sh name the same host tools, and
//! every one of them is used by a script, the code or a test. Nix cannot
//! evaluate the flake here (no store, no network), so the dev shell's list is
//! read from the text, and the flake must at least parse.
use crate::common;
use common::*;
use std::collections::BTreeSet;
use std::process::Command;

/// Debian package → the dev shell's nixpkgs name → what shows that the host
/// runs it (a string found in scripts/, src/, tests/*.rs, benches/ or
/// vm-tests/; deps.sh and this file do not count).
const TOOLS: &[(&str, &str, &str)] = &[
    ("mmdebstrap", "mmdebstrap", "mmdebstrap"),
    ("e2fsprogs", "e2fsprogs", "debugfs"),
    ("fdisk", "util-linux", "sfdisk"),
    ("qemu-utils", "qemu-utils", "qemu-img"),
    ("qemu-system-x86", "qemu_kvm", "qemu-system-x86_64"),
    ("dosfstools", "dosfstools", "mkfs.vfat"),
    ("mtools", "mtools", "mcopy"),
    ("ovmf", "OVMF", "/usr/share/ovmf/OVMF.fd"),
    ("iproute2", "iproute2", "ip netns"),
    ("iptables", "iptables", "iptables-restore"),
    ("openssh-server", "openssh", "/usr/sbin/sshd"),
    ("openssh-client", "openssh", "ssh-keygen"),
    ("nginx", "nginx", "/usr/sbin/nginx"),
    // nixpkgs builds nginx with its stream module; Debian ships it apart.
    ("libnginx-mod-stream", "nginx", "ngx_stream_module.so"),
    ("systemd", "systemd", "systemd-analyze"),
    ("curl", "curl", "/usr/bin/curl"),
    ("openssl", "openssl", "Command::new(\"openssl\")"),
    ("python3", "python3", "Command::new(\"python3\")"),
    ("python3-yaml", "python3Packages.pyyaml", "yaml.safe_load"),
    ("nix-bin", "nix", "nix-instantiate --parse"),
    ("ssh-audit", "ssh-audit", "ssh-audit"),
    ("chromium", "chromium", "--dump-dom"),
    ("postgresql", "postgresql", "pg_ctl"),
    ("ejabberd", "ejabberd", "/usr/sbin/ejabberdctl"),
    // ejabberd's PostgreSQL driver: nixpkgs builds it into ejabberd on request.
    (
        "erlang-p1-pgsql",
        "ejabberd.withPgsql",
        "fn live_postgresql_ejabberd_and_nginx",
    ),
    ("certbot", "certbot", "/usr/bin/certbot"),
    ("pebble", "pebble", "/usr/bin/pebble"),
    ("procps", "procps", "pgrep"),
    ("python3-slixmpp", "python3Packages.slixmpp", "slixmpp"),
    ("sudo", "sudo", "Command::new(\"visudo\")"),
    ("aide", "aide", "--config-check"),
    ("linux-libc-dev", "linuxHeaders", "unistd_64.h"),
    ("kmod", "kmod", "Command::new(\"modprobe\")"),
    ("docker-registry", "docker-distribution", "docker-registry"),
    ("apache2-utils", "apacheHttpd", "Command::new(\"htpasswd\")"),
    ("tar", "gnutar", "--xattrs-include"),
    ("zstd", "zstd", "\"--zstd\""),
    // nixpkgs' apt carries apt-ftparchive (Debian: apt-utils) and the apt-get of fresh.rs.
    ("apt-utils", "apt", "apt-ftparchive"),
];

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The packages of the `needs=( "PACKAGE probe…" … )` array in scripts/deps.sh.
fn deps_packages() -> BTreeSet<String> {
    let text = read("scripts/deps.sh");
    let list = text
        .split("needs=(")
        .nth(1)
        .and_then(|s| s.split("\n)").next())
        .expect("scripts/deps.sh has needs=( … )");
    list.lines()
        .filter_map(|l| {
            l.split('#')
                .next()?
                .trim()
                .trim_start_matches('"')
                .split_whitespace()
                .next()
        })
        .map(str::to_string)
        .collect()
}

/// The `hostTools` list of flake.nix, as nixpkgs names: `python3.withPackages
/// (ps: [ ps.x ])` gives `python3` and `python3Packages.x`; `(x.override { f =
/// true; })` gives `x` and `x.f`.
fn dev_shell_tools() -> BTreeSet<String> {
    let text = read("flake.nix");
    let start = text
        .find("hostTools = pkgs: with pkgs; [")
        .expect("flake.nix defines hostTools = pkgs: with pkgs; [ … ]");
    let body = &text[start..];
    let body = &body[body.find('[').unwrap_or(0) + 1..];
    let mut depth = 0;
    let mut end = body.len();
    for (i, c) in body.char_indices() {
        match c {
            '[' | '(' | '{' => depth += 1,
            ']' if depth == 0 => {
                end = i;
                break;
            }
            ']' | ')' | '}' => depth -= 1,
            _ => {}
        }
    }
    items(&body[..end])
        .iter()
        .flat_map(|item| names(item))
        .collect()
}

/// Top-level items of a Nix list body (comments dropped).
fn items(body: &str) -> Vec<String> {
    let body: String = body
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in body.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
        if c.is_whitespace() && depth == 0 {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn names(item: &str) -> Vec<String> {
    let ident = |s: &str| {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "_-".contains(*c))
            .collect::<String>()
    };
    let Some(inner) = item.strip_prefix('(') else {
        return vec![item.to_string()];
    };
    let head = ident(inner);
    if let Some(rest) = inner.strip_prefix(&format!("{head}.withPackages")) {
        let mut v = vec![head.clone()];
        v.extend(
            rest.split("ps.")
                .skip(1)
                .map(|p| format!("{head}Packages.{}", ident(p))),
        );
        return v;
    }
    if let Some(rest) = inner.strip_prefix(&format!("{head}.override")) {
        let mut v = vec![head.clone()];
        v.extend(
            rest.split(';')
                .filter_map(|kv| kv.split_once('='))
                .filter(|(_, val)| val.trim() == "true")
                .map(|(k, _)| format!("{head}.{}", ident(k.trim().trim_start_matches('{').trim()))),
        );
        return v;
    }
    panic!("tests/flake.rs cannot read the dev-shell item {item}: teach names() its form");
}

/// Everything the host side runs: scripts, code, tests, VM test folders.
fn corpus() -> String {
    let mut text = String::new();
    for dir in ["scripts", "src", "tests", "benches", "vm-tests"] {
        for entry in walk(&repo().join(dir)) {
            let rel = entry.strip_prefix(repo()).unwrap_or(&entry).to_path_buf();
            let rel = rel.to_string_lossy();
            let ours = rel == "scripts/deps.sh" || rel == "tests/flake.rs";
            // Fixtures and goldens are guest files and sample outputs, not host
            // use; a support module (tests/<name>/mod.rs) is test code.
            let data = rel.starts_with("tests/")
                && rel.matches('/').count() > 1
                && !rel.ends_with("/mod.rs");
            if !ours && !data {
                text.push_str(&std::fs::read_to_string(&entry).unwrap_or_default());
            }
        }
    }
    text
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn every_debian_package_has_its_dev_shell_package() {
    let shell = dev_shell_tools();
    for apt in deps_packages() {
        let Some((_, nix, _)) = TOOLS.iter().find(|(a, _, _)| *a == apt) else {
            panic!(
                "scripts/deps.sh installs {apt}, which tests/flake.rs does not know: add its row (nixpkgs name, evidence of use)"
            );
        };
        assert!(
            shell.contains(*nix),
            "scripts/deps.sh installs {apt}, but flake.nix's hostTools lacks {nix}; dev shell: {shell:?}"
        );
    }
}

#[test]
fn every_dev_shell_tool_is_a_debian_dependency_that_is_used() {
    let deps = deps_packages();
    let corpus = corpus();
    for tool in dev_shell_tools() {
        let rows: Vec<_> = TOOLS.iter().filter(|(_, nix, _)| *nix == tool).collect();
        assert!(
            !rows.is_empty(),
            "flake.nix's dev shell has {tool}, which scripts/deps.sh does not install (or tests/flake.rs has no row for)"
        );
        for (apt, _, evidence) in rows {
            assert!(
                deps.contains(*apt),
                "{tool} stands for the Debian package {apt}, which scripts/deps.sh does not install"
            );
            assert!(
                corpus.contains(evidence),
                "nothing in scripts/, src/, tests/ or vm-tests/ uses {apt} ({evidence:?} not found): drop it from scripts/deps.sh and flake.nix"
            );
        }
    }
}

#[test]
fn flake_nix_parses() {
    let o = Command::new("nix-instantiate")
        .args(["--parse", "flake.nix"])
        .current_dir(repo())
        .output()
        .expect("nix-instantiate: install nix-bin (scripts/deps.sh does)");
    assert!(o.status.success(), "{}", text(&o.stderr));
}

#[test]
fn the_reader_sees_through_with_packages_and_override() {
    let got = items("a (python3.withPackages (ps: [ ps.pyyaml ps.slixmpp ])) # c\n (ejabberd.override { withPgsql = true; withTools = false; }) b")
        .iter()
        .flat_map(|i| names(i))
        .collect::<Vec<_>>();
    assert_eq!(
        got,
        [
            "a",
            "python3",
            "python3Packages.pyyaml",
            "python3Packages.slixmpp",
            "ejabberd",
            "ejabberd.withPgsql",
            "b"
        ]
    );
}

/// flake.nix's outputs, evaluated for real (nix-instantiate, no store, no
/// network) with a stand-in for nixpkgs that has only what the per-profile
/// outputs use: which packages and checks there are, and each profile's
/// build name and script.
const FLAKE_OUTPUTS: &str = r#"
let
  flake = import ./flake.nix;
  lib = {
    genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
    mapAttrs' = f: set: builtins.listToAttrs (map (n: f n set.${n}) (builtins.attrNames set));
  };
  stub = system: {
    inherit system;
    runCommand = name: env: script: { inherit name script; };
  };
  nixpkgs = { inherit lib; legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] stub; };
  outs = flake.outputs { self = outs // { outPath = "/src"; }; inherit nixpkgs; };
  profiles = set: builtins.filter (n: builtins.substring 0 8 n == "profile-") (builtins.attrNames set);
in {
  packages = profiles outs.packages.x86_64-linux;
  checks = profiles outs.checks.x86_64-linux;
  builds = map (n: outs.packages.x86_64-linux.${n}) (profiles outs.packages.x86_64-linux);
}
"#;

/// Every profile of the tree that is not a fragment, judged as hardroot
/// judges it (`hardroot image profiles/*.toml` skips the same fragments).
fn machines_of_the_tree() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for p in walk(&repo().join("profiles")) {
        if p.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let (config, _) = hardroot::build::check(&p, &[]).expect("the tree's profiles check");
        if !config.profile.fragment {
            let stem = p.file_stem().expect("stem").to_string_lossy();
            out.insert(format!("profile-{stem}"));
        }
    }
    out
}

#[test]
fn the_flake_has_a_package_and_a_check_per_machine_whose_script_builds_it_offline() {
    let o = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json", "--expr", FLAKE_OUTPUTS])
        .current_dir(repo())
        .output()
        .expect("nix-instantiate: install nix-bin (scripts/deps.sh does)");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let names = |k: &str| -> BTreeSet<String> {
        doc[k]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let want = machines_of_the_tree();
    assert!(want.contains("profile-minimal") && !want.contains("profile-hardened"));
    assert_eq!(
        names("packages"),
        want,
        "flake packages vs the tree's machines"
    );
    assert_eq!(names("checks"), want, "flake checks vs the tree's machines");

    // Each derivation's script, run as the builder would (its own folder,
    // $out, the source tree where ${self} is), writes the profile's overlay.
    let tmp = tempfile::tempdir().expect("tmp");
    let bin = bin();
    let path = format!(
        "{}:{}",
        bin.parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for build in doc["builds"].as_array().expect("builds") {
        let name = build["name"].as_str().expect("name");
        let script = build["script"]
            .as_str()
            .expect("script")
            .replace("/src/", &format!("{}/", repo().display()));
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).expect("build dir");
        let out = tmp.path().join(format!("{name}.out"));
        let run = Command::new("sh")
            .args(["-euc", &script])
            .current_dir(&dir)
            .env("PATH", &path)
            .env("out", &out)
            .env_remove("HARDROOT_MODULES")
            .output()
            .expect("sh");
        assert!(run.status.success(), "{name}: {}", text(&run.stderr));
        for f in ["overlay", "manifest.json", "config.json"] {
            assert!(out.join(f).exists(), "{name}: no {f} in $out");
        }
    }
}
