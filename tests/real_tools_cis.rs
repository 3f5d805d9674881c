//! The CIS Debian 12 modules (issue #19), rendered for the XMPP profile by the
//! real `hardroot build` and checked with the real tools, without a VM and
//! without touching the host: visudo -c, aide --config-check, modprobe -n
//! with the rendered modprobe.d file, the kernel's syscall tables for every
//! syscall of the audit rules (auditctl would load them into the host's
//! kernel), pam-auth-update --root for the PAM stacks, the
//! boot-time scripts run on scratch copies, systemd-analyze verify of the
//! units. docs/cis.md says which VM check proves each control live.
use crate::common;
use common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const PROFILE: &str = "profiles/xmpp-server.toml";

const CIS_MODULES: &[&str] = &[
    "kernel_modules",
    "apparmor",
    "auditd",
    "aide",
    "logging",
    "cron",
    "banner",
    "sudo",
    "pam",
    "accounts",
    "coredump",
    "timesync",
    "accounting",
];

struct Built {
    _tmp: tempfile::TempDir,
    out: PathBuf,
    config: Value,
    manifest: Value,
}

impl Built {
    fn file(&self, path: &str) -> PathBuf {
        self.out.join("overlay").join(path.trim_start_matches('/'))
    }

    fn read(&self, path: &str) -> String {
        let p = self.file(path);
        fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    }

    /// Manifest entries (path without the leading /, module, mode).
    fn entries(&self) -> Vec<(String, String, String)> {
        self.manifest["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                (s("path"), s("module"), s("mode"))
            })
            .collect()
    }
}

fn build() -> Built {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let o = hardroot(
        &repo(),
        &["build", PROFILE, "-o", &out.display().to_string()],
    );
    assert!(o.status.success(), "hardroot build: {}", text(&o.stderr));
    let json = |name: &str| -> Value {
        let t = fs::read_to_string(out.join(name)).expect("read json");
        serde_json::from_str(&t).expect("parse json")
    };
    Built {
        config: json("config.json"),
        manifest: json("manifest.json"),
        out,
        _tmp: tmp,
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

#[test]
fn the_xmpp_profile_imports_every_cis_module() {
    let b = build();
    for m in CIS_MODULES {
        assert!(
            b.config.get(*m).is_some(),
            "{PROFILE} does not import module {m}"
        );
    }
    // The image stage needs these on the kernel command line (CIS 6.2.1.3-4).
    let cmdline = strings(&b.config["system"]["kernel_cmdline_extra"]);
    assert!(cmdline.contains(&"audit=1".to_string()), "{cmdline:?}");
    assert!(
        cmdline.contains(&"audit_backlog_limit=8192".to_string()),
        "{cmdline:?}"
    );
}

/// CIS 1.1.1.x, 3.2.x: modprobe itself, reading only the rendered file,
/// refuses every listed module, and the ESP's vfat is not among them.
#[test]
fn modprobe_refuses_the_disabled_modules() {
    need_tool("modprobe", "kmod");
    let b = build();
    let conf = b.file("etc/modprobe.d/hardroot-disabled.conf");
    let km = &b.config["kernel_modules"];
    let mut all = strings(&km["disabled_filesystems"]);
    all.extend(strings(&km["disabled_protocols"]));
    for m in [
        "cramfs",
        "freevxfs",
        "jffs2",
        "hfs",
        "hfsplus",
        "udf",
        "usb-storage",
        // Level 2 (1.1.1.7): the XMPP profile adds it to the module's list.
        "squashfs",
        "dccp",
        "sctp",
        "rds",
        "tipc",
    ] {
        assert!(all.contains(&m.to_string()), "{m} is not disabled");
    }
    assert!(
        !all.iter().any(|m| m == "vfat"),
        "vfat is never disabled: the EFI system partition is vfat"
    );
    // An empty module tree: modprobe answers from the config alone and never
    // reads the host's modules.
    let fake = tempfile::tempdir().expect("tmp");
    fs::create_dir_all(fake.path().join("lib/modules/6.1.0")).expect("mkdir");
    let modprobe = |args: &[&str]| {
        let mut c = Command::new("modprobe");
        c.arg("-d")
            .arg(fake.path())
            .args(["-S", "6.1.0", "-C"])
            .arg(&conf)
            .args(args);
        run(&mut c)
    };
    let config = text(&modprobe(&["-c"]).stdout);
    for m in &all {
        let o = modprobe(&["-n", "-v", m]);
        assert!(
            o.status.success() && text(&o.stdout).contains("install /bin/false"),
            "modprobe -n -v {m} with the rendered config: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        assert!(
            config
                .lines()
                .any(|l| l == format!("blacklist {}", m.replace('-', "_"))),
            "{m} not blacklisted"
        );
    }
    let o = modprobe(&["-n", "-v", "vfat"]);
    assert!(
        !text(&o.stdout).contains("install /bin/false"),
        "vfat is refused"
    );
}

/// CIS 5.2.x: the sudoers drop-in parses, has the CIS defaults and the mode
/// sudo requires.
#[test]
fn visudo_accepts_the_sudoers_drop_in() {
    need_tool("visudo", "sudo");
    let b = build();
    let path = b.file("etc/sudoers.d/hardroot");
    run_ok(Command::new("visudo").args(["-c", "-q", "-f"]).arg(&path));
    let text = b.read("etc/sudoers.d/hardroot");
    assert!(text.lines().any(|l| l == "Defaults use_pty"));
    assert!(
        text.lines()
            .any(|l| l == "Defaults logfile=\"/var/log/sudo.log\"")
    );
    // Not even in a comment: grep-based auditors (ovh/debian-cis
    // sudo_no_nopasswd, sudo_re_authenticate) read comments as rules.
    assert!(!text.contains("NOPASSWD") && !text.contains("!authenticate"));
    let mode = b
        .entries()
        .into_iter()
        .find(|(p, _, _)| p == "etc/sudoers.d/hardroot")
        .map(|(_, _, m)| m);
    assert_eq!(mode.as_deref(), Some("0440"));
    // A broken copy is refused: visudo really checks.
    let bad = tempfile::NamedTempFile::new().expect("tmp");
    fs::write(bad.path(), format!("{text}Defaults use_pty = \n")).expect("write");
    assert!(
        !run(Command::new("visudo")
            .args(["-c", "-q", "-f"])
            .arg(bad.path()))
        .status
        .success()
    );
}

/// CIS 6.3.x: aide reads the config, and an init + check on a scratch tree
/// with the same rules finds a changed file.
#[test]
fn aide_accepts_the_config_and_finds_a_change() {
    need_tool("aide", "aide");
    let b = build();
    let conf = b.file("etc/aide/aide.conf");
    run_ok(
        Command::new("aide")
            .arg("--config-check")
            .arg("-c")
            .arg(&conf),
    );
    let conf_text = b.read("etc/aide/aide.conf");
    for excluded in [
        "/var/lib/postgresql",
        "/var/log",
        "/proc",
        "/var/lib/ejabberd",
    ] {
        assert!(
            conf_text
                .lines()
                .any(|l| l.starts_with(&format!("!{excluded}("))),
            "{excluded} not excluded"
        );
    }
    // The same rules, pointed at a scratch tree and database.
    // Not under /tmp: the config excludes /tmp.
    let tmp = tempfile::tempdir_in(repo().join("target")).expect("tmp");
    let t = tmp.path();
    let tree = t.join("tree");
    fs::create_dir_all(tree.join("etc")).expect("mkdir");
    fs::write(tree.join("etc/kept"), "same\n").expect("write");
    fs::write(tree.join("etc/changed"), "before\n").expect("write");
    let root = tree.display().to_string();
    let scratch: String = conf_text
        .lines()
        .map(|l| {
            if let Some(rest) = l.strip_prefix("database_in=file:") {
                format!(
                    "database_in=file:{}/db{}",
                    t.display(),
                    rest.rsplit('/')
                        .next()
                        .map(|n| format!("/{n}"))
                        .unwrap_or_default()
                )
            } else if let Some(rest) = l.strip_prefix("database_out=file:") {
                format!(
                    "database_out=file:{}/db{}",
                    t.display(),
                    rest.rsplit('/')
                        .next()
                        .map(|n| format!("/{n}"))
                        .unwrap_or_default()
                )
            } else if l.starts_with("/etc(") {
                l.replacen("/etc(", &format!("{root}/etc("), 1)
            } else if l.starts_with('/') {
                String::new()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::create_dir_all(t.join("db")).expect("mkdir");
    let sconf = t.join("aide.conf");
    fs::write(&sconf, scratch).expect("write");
    run_ok(Command::new("aide").arg("-c").arg(&sconf).arg("--init"));
    fs::rename(t.join("db/aide.db.new"), t.join("db/aide.db")).expect("db");
    let o = run(Command::new("aide").arg("-c").arg(&sconf).arg("--check"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    fs::write(tree.join("etc/changed"), "after!\n").expect("write");
    let o = run(Command::new("aide").arg("-c").arg(&sconf).arg("--check"));
    // bit 4: changed entries
    assert_eq!(
        o.status.code().map(|c| c & 4),
        Some(4),
        "{}",
        text(&o.stdout)
    );
    assert!(text(&o.stdout).contains(&format!("{root}/etc/changed")));
}

// ---------------------------------------------------------------------------
// audit rules: a syntax check that never talks to the host's kernel
// ---------------------------------------------------------------------------

/// The kernel's syscall tables as Debian's linux-libc-dev installs them
/// (auditctl's own table is built from the same list; installing auditd on
/// a test host would start a daemon there).
const UNISTD_64: &str = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";
const UNISTD_32: &str = "/usr/include/x86_64-linux-gnu/asm/unistd_32.h";

fn syscall_known(arch: &str, name: &str) -> bool {
    let table = if arch == "b32" { UNISTD_32 } else { UNISTD_64 };
    let text = fs::read_to_string(table)
        .unwrap_or_else(|e| panic!("{table}: {e} (apt-get install linux-libc-dev)"));
    let want = format!("#define __NR_{name} ");
    text.lines().any(|l| l.starts_with(&want))
}

/// Every line of a rules file is one auditctl rule of the shapes CIS uses,
/// with syscalls that exist for its arch.
fn check_rule(file: &str, line: &str) -> Result<(), String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let bad = |why: &str| Err(format!("{file}: `{line}`: {why}"));
    match w.first().copied() {
        Some("-D") if w.len() == 1 => Ok(()),
        Some("-b" | "--backlog_wait_time" | "-f" | "-e") if w.len() == 2 => {
            if w[1].parse::<u32>().is_ok() {
                Ok(())
            } else {
                bad("value is not a number")
            }
        }
        Some("-w") => {
            if w.len() == 6
                && w[1].starts_with('/')
                && w[2] == "-p"
                && w[3].chars().all(|c| "rwxa".contains(c))
                && w[4] == "-k"
            {
                Ok(())
            } else {
                bad("not `-w PATH -p PERMS -k KEY`")
            }
        }
        Some("-a") => {
            if w.get(1) != Some(&"always,exit") {
                return bad("not always,exit");
            }
            let mut arch = None;
            let mut syscalls = Vec::new();
            let mut key = false;
            let mut path = false;
            let mut i = 2;
            while i < w.len() {
                let v = w.get(i + 1).copied().unwrap_or("");
                match w[i] {
                    "-F" => {
                        let field = v
                            .split(['=', '!', '<', '>', '&'])
                            .next()
                            .unwrap_or_default();
                        if ![
                            "arch", "auid", "path", "perm", "exit", "a0", "key", "uid", "euid",
                        ]
                        .contains(&field)
                        {
                            return bad(&format!("field {field}"));
                        }
                        if let Some(a) = v.strip_prefix("arch=") {
                            arch = Some(a.to_string());
                        }
                        if let Some(p) = v.strip_prefix("path=") {
                            if !p.starts_with('/') {
                                return bad("relative path");
                            }
                            path = true;
                        }
                        if let Some(e) = v.strip_prefix("exit=")
                            && !["-EACCES", "-EPERM"].contains(&e)
                        {
                            return bad("exit value");
                        }
                        key |= v.starts_with("key=");
                    }
                    "-S" => syscalls.extend(v.split(',').map(str::to_string)),
                    "-C" => {
                        if v != "euid!=uid" {
                            return bad("-C");
                        }
                    }
                    "-k" => key = true,
                    other => return bad(&format!("option {other}")),
                }
                i += 2;
            }
            if !key {
                return bad("no key");
            }
            if syscalls.is_empty() && !path {
                return bad("neither syscalls nor a path");
            }
            if !syscalls.is_empty() {
                let Some(arch) = arch else {
                    return bad("syscalls without -F arch=");
                };
                for s in syscalls {
                    if !syscall_known(&arch, &s) {
                        return bad(&format!("{s} is no {arch} syscall"));
                    }
                }
            }
            Ok(())
        }
        _ => bad("unknown rule"),
    }
}

fn rule_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn audit_rules_are_valid_and_end_immutable() {
    for table in [UNISTD_64, UNISTD_32] {
        assert!(
            Path::new(table).exists(),
            "{table} is missing: apt-get install linux-libc-dev (scripts/deps.sh)"
        );
    }
    let b = build();
    let mut files: Vec<String> = b
        .entries()
        .into_iter()
        .map(|(p, _, _)| p)
        .filter(|p| p.starts_with("etc/audit/rules.d/") && p.ends_with(".rules"))
        .collect();
    // augenrules reads them in this order.
    files.sort();
    let mut all = Vec::new();
    for f in &files {
        for l in rule_lines(&b.read(f)) {
            check_rule(f, &l).unwrap_or_else(|e| panic!("{e}"));
            all.push(l);
        }
    }
    assert_eq!(all.first().map(String::as_str), Some("-D"));
    assert_eq!(
        all.last().map(String::as_str),
        Some("-e 2"),
        "-e 2 must be last"
    );
    // Every CIS group is there (a key per group).
    let joined = all.join("\n");
    for key in [
        "sudoers",
        "user_emulation",
        "sudo_log_file",
        "time-change",
        "system-locale",
        "access",
        "identity",
        "perm_mod",
        "mounts",
        "session",
        "logins",
        "delete",
        "MAC-policy",
        "perm_chng",
        "usermod",
        "kernel_modules",
    ] {
        assert!(
            joined.contains(&format!("-k {key}")),
            "no rule with key {key}"
        );
    }
    // The checker itself refuses what auditctl would.
    for broken in [
        "-a always,exit -F arch=b64 -S no_such_call -k x",
        "-a always,exit -S chmod -k x",
        "-w etc/passwd -p wa -k identity",
        "-a exit,always -F arch=b64 -S chmod -k x",
    ] {
        assert!(check_rule("test", broken).is_err(), "accepted: {broken}");
    }
    // auditd.conf: CIS values, and the space actions in the right order.
    let conf = b.read("etc/audit/auditd.conf");
    let get = |k: &str| {
        conf.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} = ")))
            .unwrap_or_else(|| panic!("auditd.conf has no {k}"))
            .to_string()
    };
    assert_eq!(get("max_log_file_action"), "keep_logs");
    assert!(get("space_left_action").starts_with("exec /"));
    assert!(["single", "halt"].contains(&get("admin_space_left_action").as_str()));
    let space: u32 = get("space_left").parse().expect("int");
    let admin: u32 = get("admin_space_left").parse().expect("int");
    assert!(admin < space && space < 256, "{admin} < {space} < 256 MiB");
}

/// The boot-time scan writes one rule per setuid/setgid program, and does
/// nothing on the next boot while dpkg's status is unchanged.
#[test]
fn privileged_scan_writes_a_rule_per_setuid_program() {
    let b = build();
    let tmp = tempfile::tempdir().expect("tmp");
    let t = tmp.path();
    let tree = t.join("usr");
    fs::create_dir_all(tree.join("bin")).expect("mkdir");
    for (name, mode) in [("su", 0o4755), ("wall", 0o2755), ("ls", 0o755)] {
        let p = tree.join("bin").join(name);
        fs::write(&p, "#!/bin/sh\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let status = t.join("status");
    fs::write(&status, "").expect("write");
    let rules = t.join("50-privileged.rules");
    let script = b
        .read("usr/lib/hardroot/auditd-privileged")
        .replace(
            "/etc/audit/rules.d/50-privileged.rules",
            &rules.display().to_string(),
        )
        .replace("/var/lib/dpkg/status", &status.display().to_string())
        .replace(
            "for root in /usr /opt /var /home ;",
            &format!("for root in {} ;", tree.display()),
        );
    let path = t.join("scan");
    fs::write(&path, script).expect("write");
    let out = run_ok(Command::new("bash").arg(&path));
    assert!(out.contains("2 setuid/setgid programs audited"), "{out}");
    let written = fs::read_to_string(&rules).expect("rules");
    for prog in ["su", "wall"] {
        let want = format!(
            "-a always,exit -F path={}/bin/{prog} -F perm=x -F auid>=1000 -F auid!=4294967295 -k privileged",
            tree.display()
        );
        assert!(written.lines().any(|l| l == want), "{written}");
    }
    assert!(!written.contains("/bin/ls "));
    for l in rule_lines(&written) {
        check_rule("50-privileged.rules", &l).unwrap_or_else(|e| panic!("{e}"));
    }
    // Unchanged dpkg status: the next boot does not scan again.
    let again = run_ok(Command::new("bash").arg(&path));
    assert!(again.is_empty(), "rescanned: {again}");
}

/// CIS 6.1.1.3, 6.1.2.2-6.1.2.4, 6.1.3.8: journald's and logrotate's main
/// files carry the settings (grep-based auditors such as ovh/debian-cis read
/// journald.conf and logrotate.conf, not their drop-in folders), and no
/// drop-in contradicts them.
#[test]
fn journald_and_logrotate_main_files_carry_the_policy() {
    let b = build();
    let j = b.read("etc/systemd/journald.conf");
    assert!(j.lines().any(|l| l == "[Journal]"));
    for want in [
        "Storage=persistent",
        "Compress=yes",
        "ForwardToSyslog=no",
        "SystemMaxUse=200M",
        "SystemKeepFree=64M",
        "RuntimeMaxUse=32M",
        "RuntimeKeepFree=64M",
        "MaxFileSec=1month",
    ] {
        assert!(j.lines().any(|l| l == want), "journald.conf: no {want}");
    }
    assert!(
        !b.entries()
            .iter()
            .any(|(p, _, _)| p.starts_with("etc/systemd/journald.conf.d/")),
        "a journald drop-in would override journald.conf"
    );
    let r = b.read("etc/logrotate.conf");
    assert!(r.lines().any(|l| l == "create 0640"), "{r}");
    assert!(r.lines().any(|l| l == "include /etc/logrotate.d"), "{r}");
    // CIS 6.1.4.1 again every hour for files services create once running.
    let t = b.read("etc/systemd/system/hardroot-log-permissions.timer");
    assert!(t.lines().any(|l| l == "OnUnitActiveSec=1h"), "{t}");
    assert!(
        b.entries().iter().any(|(p, _, _)| p
            == "etc/systemd/system/timers.target.wants/hardroot-log-permissions.timer"),
        "the log permissions timer is not enabled"
    );
}

/// CIS 6.1.4.1: the boot unit takes away every bit beyond 0640 and adds none.
#[test]
fn log_permissions_only_remove_bits() {
    let b = build();
    let tmp = tempfile::tempdir().expect("tmp");
    let logs = tmp.path().join("log");
    fs::create_dir_all(logs.join("journal")).expect("mkdir");
    use std::os::unix::fs::PermissionsExt;
    let cases = [
        ("open.log", 0o666, 0o640),
        ("exec.log", 0o755, 0o640),
        ("fine.log", 0o640, 0o640),
        ("strict.log", 0o600, 0o600),
        ("journal/system.journal", 0o644, 0o644),
    ];
    for (name, mode, _) in cases {
        let p = logs.join(name);
        fs::write(&p, "x").expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let script = b
        .read("usr/lib/hardroot/log-permissions")
        .replace("/var/log", &logs.display().to_string());
    let path = tmp.path().join("perms");
    fs::write(&path, script).expect("write");
    run_ok(Command::new("bash").arg(&path));
    for (name, _, want) in cases {
        let got = fs::metadata(logs.join(name))
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(got, want, "{name}: {got:o}, want {want:o}");
    }
}

/// CIS 1.6.x: no getty escape or OS name in the banners; 0644.
#[test]
fn banners_say_nothing_about_the_system() {
    let b = build();
    for f in ["etc/issue", "etc/issue.net", "etc/motd"] {
        let t = b.read(f);
        for esc in ["\\m", "\\r", "\\s", "\\v"] {
            assert!(!t.contains(esc), "{f} contains {esc}");
        }
        assert!(!t.to_lowercase().contains("debian"), "{f} names the OS");
    }
    for (p, _, mode) in b.entries() {
        if ["etc/issue", "etc/issue.net", "etc/motd"].contains(&p.as_str()) {
            assert_eq!(mode, "0644", "{p}");
        }
    }
    // And the assertion refuses a banner that names the OS.
    let tmp = tempfile::tempdir().expect("tmp");
    let profile = tmp.path().join("p.toml");
    fs::write(
        &profile,
        format!(
            "[profile]\nimports = [\"{}\"]\n[banner]\ntext = \"Debian GNU/Linux 12 \\\\n \\\\l\\n\"\n",
            repo().join(PROFILE).display()
        ),
    )
    .expect("write");
    let o = hardroot(
        &repo(),
        &[
            "check",
            &profile.display().to_string(),
            "--modules",
            &repo().join("modules").display().to_string(),
        ],
    );
    assert!(!o.status.success(), "a banner naming the OS was accepted");
    assert!(text(&o.stderr).contains("banner"), "{}", text(&o.stderr));
}

/// CIS 5.3.x, 5.4.x: the PAM stacks and login.defs carry the policy.
#[test]
fn pam_and_login_defs_carry_the_policy() {
    let b = build();
    let auth = rule_words(&b.read("etc/pam.d/common-auth"));
    assert_eq!(
        auth,
        [
            "auth requisite pam_faillock.so preauth",
            "auth [success=2 default=ignore] pam_unix.so try_first_pass",
            "auth [default=die] pam_faillock.so authfail",
            "auth requisite pam_deny.so",
            "auth required pam_permit.so",
        ]
    );
    assert!(!auth.iter().any(|l| l.contains("nullok")));
    let password = rule_words(&b.read("etc/pam.d/common-password"));
    assert!(password[0].contains("pam_pwquality.so"));
    assert!(password[1].contains("pam_pwhistory.so remember=24 enforce_for_root use_authtok"));
    assert!(password[2].contains("pam_unix.so") && password[2].ends_with("yescrypt"));
    let account = rule_words(&b.read("etc/pam.d/common-account"));
    assert!(
        account
            .iter()
            .any(|l| l == "account required pam_faillock.so")
    );
    let faillock = b.read("etc/security/faillock.conf");
    assert!(faillock.lines().any(|l| l == "deny = 5"));
    assert!(faillock.lines().any(|l| l == "unlock_time = 900"));
    // The main file (grep-based auditors read only it), CIS 5.3.3.2.x.
    let pwq = b.read("etc/security/pwquality.conf");
    for want in [
        "minlen = 14",
        "minclass = 4",
        "dcredit = -1",
        "ucredit = -1",
        "lcredit = -1",
        "ocredit = -1",
        "difok = 2",
        "maxrepeat = 3",
        "maxsequence = 3",
        "dictcheck = 1",
        "enforcing = 1",
        "enforce_for_root",
    ] {
        assert!(pwq.lines().any(|l| l == want), "pwquality.conf: no {want}");
    }
    let su = b.read("etc/pam.d/su");
    assert!(su.lines().any(|l| rule_words(l).first().map(String::as_str)
        == Some("auth required pam_wheel.so use_uid group=sugroup")));
    let defs = b.read("etc/login.defs");
    let get = |k: &str| {
        defs.lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(k)).then(|| w.next().unwrap_or("").to_string())
            })
            .unwrap_or_default()
    };
    assert_eq!(get("PASS_MAX_DAYS"), "365");
    assert_eq!(get("PASS_MIN_DAYS"), "1");
    assert_eq!(get("PASS_WARN_AGE"), "7");
    assert_eq!(get("UMASK"), "027");
    assert_eq!(get("ENCRYPT_METHOD"), "YESCRYPT");
    assert!(
        b.read("etc/default/useradd")
            .lines()
            .any(|l| l == "INACTIVE=30")
    );
    // TMOUT: set, readonly, exported, for bash and dash logins alike.
    let tmout = b.file("etc/profile.d/hardroot-tmout.sh");
    for shell in ["bash", "dash"] {
        let script = format!(
            ". {}; (TMOUT=0) 2>/dev/null && echo writable; sh -c 'echo $TMOUT'",
            tmout.display()
        );
        let o = run_ok(Command::new(shell).args(["-c", &script]));
        assert_eq!(o.trim(), "900", "{shell}: {o}");
    }
}

/// CIS 5.3.2.x the Debian way: pam-auth-update, given Debian's unix profile
/// and ours, writes the same stacks the module renders (but for pam_unix's
/// nullok, which the module drops, CIS 5.3.3.4.1; and pwquality, whose
/// profile comes with libpam-pwquality in the image).
#[test]
fn pam_auth_update_makes_the_rendered_stacks_from_the_profiles() {
    need_tool("pam-auth-update", "libpam-runtime");
    let unix = Path::new("/usr/share/pam-configs/unix");
    assert!(unix.exists(), "Debian's pam-configs/unix (libpam-runtime)");
    let b = build();
    let tmp = tempfile::tempdir().expect("tmp");
    let r = tmp.path();
    let configs = r.join("usr/share/pam-configs");
    for d in ["etc/pam.d", "var/lib/pam"] {
        fs::create_dir_all(r.join(d)).expect("mkdir");
    }
    fs::create_dir_all(&configs).expect("mkdir");
    fs::copy(unix, configs.join("unix")).expect("copy unix profile");
    for p in [
        "hardroot-faillock",
        "hardroot-faillock-notify",
        "hardroot-pwhistory",
    ] {
        fs::copy(
            b.file(&format!("usr/share/pam-configs/{p}")),
            configs.join(p),
        )
        .expect("copy profile");
    }
    run_ok(
        Command::new("pam-auth-update")
            .arg("--root")
            .arg(r)
            .args(["--package", "--force"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    );
    for stack in ["auth", "account", "password"] {
        let made: Vec<String> = rule_words(
            &fs::read_to_string(r.join(format!("etc/pam.d/common-{stack}"))).expect("read"),
        )
        .into_iter()
        .map(|l| l.replace(" nullok", ""))
        .collect();
        let ours: Vec<String> = rule_words(&b.read(&format!("etc/pam.d/common-{stack}")))
            .into_iter()
            .filter(|l| !l.contains("pam_pwquality.so"))
            .collect();
        assert_eq!(made, ours, "common-{stack}");
    }
}

/// A PAM line's words joined by one space, comments dropped.
fn rule_words(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The new units: systemd-analyze verify on a root with the overlay, stubs for
/// packaged units the host lacks, and the programs the units run.
#[test]
fn cis_units_pass_systemd_analyze_verify() {
    need_tool("systemd-analyze", "systemd");
    let b = build();
    let root = unit_root(
        &b.out.join("overlay"),
        &["auditd.service", "apparmor.service"],
    );
    let r = root.path();
    fs::create_dir_all(r.join("bin")).expect("mkdir");
    fs::copy("/bin/true", r.join("bin/true")).expect("copy /bin/true");
    let units: Vec<String> = b
        .entries()
        .into_iter()
        .filter(|(p, m, _)| {
            CIS_MODULES.contains(&m.as_str())
                && p.starts_with("etc/systemd/system/")
                && (p.ends_with(".service") || p.ends_with(".timer"))
        })
        .map(|(p, _, _)| p)
        // masks are links to /dev/null
        .filter(|p| !r.join(p).is_symlink())
        .collect();
    assert!(units.len() >= 6, "only {units:?}");
    for unit in &units {
        let body = fs::read_to_string(r.join(unit)).unwrap_or_default();
        for l in body.lines() {
            let Some((k, v)) = l.split_once('=') else {
                continue;
            };
            if !k.starts_with("Exec") {
                continue;
            }
            let exe = v.trim_start_matches(['-', '@', '!', '+', ':']);
            let exe = exe.split_whitespace().next().unwrap_or("");
            let inside = r.join(exe.trim_start_matches('/'));
            if !inside.exists() {
                fs::create_dir_all(inside.parent().unwrap_or(r)).expect("mkdir");
                if Path::new(exe).exists() {
                    run_ok(Command::new("cp").arg("-L").arg(exe).arg(&inside));
                } else {
                    // A program of a package the host lacks (aa-complain).
                    fs::copy("/bin/true", &inside).expect("stub program");
                }
            }
        }
        let o = run(Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(format!("--root={}", r.display()))
            .arg(format!("/{unit}")));
        let err = text(&o.stderr);
        assert!(
            o.status.success() && err.trim().is_empty(),
            "systemd-analyze verify {unit}:\n{err}"
        );
    }
}

/// Runs the rendered check-controls with `--only ids`, fake commands first on
/// PATH (name → shell body), into a scratch AUDIT_DIR: exit status and controls.tsv.
fn check_controls(built: &Built, fakes: &[(&str, &str)], ids: &[&str]) -> (bool, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bin = tmp.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    for (name, body) in fakes {
        let path = bin.join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("bash")
        .arg(built.file("/usr/lib/hardroot/check-controls"))
        .arg("--only")
        .args(ids)
        .env("PATH", path)
        .env("AUDIT_DIR", tmp.path().join("audit"))
        .output()
        .expect("run check-controls");
    let tsv = fs::read_to_string(tmp.path().join("audit/controls.tsv")).unwrap_or_default();
    (o.status.success(), tsv)
}

#[test]
fn every_declared_control_has_a_title_and_the_check_script_parses() {
    let b = build();
    let controls = b.config["compliance"]["controls"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        controls.len() > 100,
        "the CIS modules declare their controls: {}",
        controls.len()
    );
    for c in &controls {
        let script = c["check"].as_str().unwrap_or_default();
        let o = Command::new("bash")
            .args(["-n", "-c", script])
            .output()
            .expect("bash -n");
        assert!(
            o.status.success(),
            "{}: {}: {}",
            c["id"],
            script,
            text(&o.stderr)
        );
    }
    let o = Command::new("bash")
        .arg("-n")
        .arg(b.file("/usr/lib/hardroot/check-controls"))
        .output()
        .expect("bash -n");
    assert!(o.status.success(), "{}", text(&o.stderr));
}

#[test]
fn a_control_check_fails_on_what_it_finds_and_says_so() {
    let b = build();
    let sshd = |tries: u32| {
        format!("[ \"$1\" = -T ] && printf 'port 22\\nmaxauthtries {tries}\\nloglevel VERBOSE\\n'")
    };
    let (ok, tsv) = check_controls(&b, &[("sshd", &sshd(6))], &["5.1.16", "5.1.14"]);
    assert!(!ok, "MaxAuthTries 6 fails CIS 5.1.16: {tsv}");
    assert!(
        tsv.contains("failed\t5.1.16\tmaxauthtries 6 (want 1..4)"),
        "{tsv}"
    );
    assert!(tsv.contains("met\t5.1.14\t"), "{tsv}");
    let (ok, tsv) = check_controls(&b, &[("sshd", &sshd(3))], &["5.1.16"]);
    assert!(ok && tsv.starts_with("met\t5.1.16\t"), "{tsv}");
    // sshd -T failing (no host key yet) is a failure, never a pass.
    let (ok, tsv) = check_controls(
        &b,
        &[("sshd", "echo 'no hostkeys available' >&2; exit 1")],
        &["5.1.16"],
    );
    assert!(!ok && tsv.contains("no hostkeys available"), "{tsv}");
}

#[test]
fn the_open_port_control_names_a_listener_without_a_firewall_rule() {
    let b = build();
    let iptables = "cat <<'R'\n-P INPUT DROP\n-A INPUT -p tcp -m tcp --dport 5222 -j ACCEPT\n-A INPUT -s 10.0.0.0/8 -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -p udp -m udp --dport 49152:65535 -j ACCEPT\nR";
    let ss = |extra: &str| {
        format!(
            "printf 'tcp LISTEN 0 128 0.0.0.0:5222 0.0.0.0:*\\ntcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:*\\nudp UNCONN 0 0 0.0.0.0:50000 0.0.0.0:*\\ntcp LISTEN 0 4096 127.0.0.1:5432 0.0.0.0:*\\n{extra}'"
        )
    };
    let (ok, tsv) = check_controls(&b, &[("iptables", iptables), ("ss", &ss(""))], &["4.4.2.4"]);
    assert!(
        ok,
        "every port beyond loopback has a rule (5432 on loopback needs none): {tsv}"
    );
    let (ok, tsv) = check_controls(
        &b,
        &[
            ("iptables", iptables),
            ("ss", &ss("tcp LISTEN 0 128 0.0.0.0:2024 0.0.0.0:*\\n")),
        ],
        &["4.4.2.4"],
    );
    assert!(!ok && tsv.contains("without a rule: tcp/2024"), "{tsv}");
}
