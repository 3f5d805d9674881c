//! The acceptance report rendered from a recorded real run
//! (tests/fixtures/report/run/, made by tests/fixtures/report/record.sh):
//! its content, its self-containment, and that Chromium renders it.
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report/run")
}

/// The recorded run copied to a temp folder: rendering must not depend on
/// (or write into) the repository's copy.
fn run_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture(), dir.path());
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn render(run: &Path) -> String {
    hardroot::report::render(run, None, None).unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The text of the element with this id, tags stripped (enough for our own page).
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element with id {id}"));
    let rest = &html[start..];
    let end = rest.find("</table>").unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn identity_names_the_image_and_every_package_with_its_version() {
    let run = run_copy();
    let html = render(run.path());
    let m = json(&fixture().join("build/manifest.json"));
    let im = json(&fixture().join("build/image-manifest.json"));
    assert!(html.contains(m["root_hash"].as_str().unwrap()));
    assert!(html.contains(im["rootfs"]["sha256"].as_str().unwrap()));
    assert!(html.contains(&format!(
        "hardroot acceptance report: {}",
        m["profile"].as_str().unwrap()
    )));
    let packages = section(&html, "packages");
    let listed = im["packages"].as_array().unwrap();
    assert!(listed.len() > 50, "a real image has a real package list");
    for p in listed {
        let row = format!(
            "<td class=\"mono\">{}</td><td class=\"mono\">{}</td>",
            p["name"].as_str().unwrap(),
            html_escape(p["version"].as_str().unwrap())
        );
        assert!(packages.contains(&row), "package row missing: {row}");
    }
}

#[test]
fn exposure_matrix_has_a_row_per_declared_listener_with_measured_cells() {
    let run = run_copy();
    let html = render(run.path());
    let table = section(&html, "exposure-table");
    let config = json(&fixture().join("build/config.json"));
    let declared = config["firewall"]["listeners"].as_array().unwrap();
    let rows = table.matches("<tr>").count() - 1;
    let undeclared = table.matches("class=\"bad undeclared\"").count();
    assert_eq!(rows, declared.len(), "one row per declared listener");
    // The recorded run measured SSH (trusted) from both clients: the
    // trusted one got through, the untrusted one did not, and both as declared.
    let ssh = row_of(table, "<td class=\"num\">22</td><td>tcp</td>");
    assert!(
        ssh.contains("<td class=\"ok\">v4 yes · v6 yes</td>"),
        "{ssh}"
    );
    assert!(ssh.contains("<td class=\"ok\">v4 no · v6 no</td>"), "{ssh}");
    // Every socket of the run (ss.txt) on a port no listener declares is a red row.
    let ss = std::fs::read_to_string(fixture().join("facts/ss.txt")).unwrap();
    let mut stray = std::collections::BTreeSet::new();
    for line in ss.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let port: u64 = cols[4].rsplit_once(':').unwrap().1.parse().unwrap();
        let covered = declared.iter().any(|d| {
            let (lo, hi) = (d["port"].as_u64().unwrap(), d["port_end"].as_u64().unwrap());
            d["proto"] == cols[0] && port >= lo && port <= hi.max(lo)
        });
        if !covered {
            stray.insert((cols[0], port));
        }
    }
    assert!(!ss.is_empty());
    assert_eq!(undeclared, stray.len(), "undeclared rows: {stray:?}");
}

fn row_of<'a>(table: &'a str, start: &str) -> &'a str {
    let i = table
        .find(start)
        .unwrap_or_else(|| panic!("no row {start}"));
    let rest = &table[i..];
    &rest[..rest.find("</tr>").unwrap_or(rest.len())]
}

#[test]
fn a_listener_the_matrix_does_not_declare_is_a_red_row() {
    let run = run_copy();
    let ss = run.path().join("facts/ss.txt");
    let mut text = std::fs::read_to_string(&ss).unwrap();
    text.push_str("tcp LISTEN 0 5 0.0.0.0:31337 0.0.0.0:* users:((\"backdoor-x\",pid=1,fd=3))\n");
    std::fs::write(&ss, text).unwrap();
    let html = render(run.path());
    let table = section(&html, "exposure-table");
    let row = row_of(table, "<td class=\"num\">31337</td>");
    assert!(
        row.contains("backdoor-x") && row.contains("undeclared"),
        "{row}"
    );
    assert!(
        table[..table.find("31337").unwrap()]
            .rfind("<tr class=\"bad undeclared\">")
            .is_some()
    );
}

#[test]
fn every_step_is_listed_and_a_failure_shows_its_output_and_the_serial_tail() {
    let run = run_copy();
    let html = render(run.path());
    let results = json(&fixture().join("results.json"));
    let steps = results["steps"].as_array().unwrap();
    assert!(html.contains(&format!("Every step ({}, 0 failed)", steps.len())));
    assert!(
        !html.contains("class=\"serial-tail\""),
        "a passed run shows no console"
    );

    // The same run, failed at its last step: output and serial tail appear.
    let mut failed = results.clone();
    failed["passed"] = false.into();
    failed["error"] = "server: `false` failed with exit code 1\nstdout: marker-output".into();
    let last = failed["steps"].as_array_mut().unwrap().last_mut().unwrap();
    last["ok"] = false.into();
    last["error"] = "exit code 1: marker-output".into();
    std::fs::write(run.path().join("results.json"), failed.to_string()).unwrap();
    let html = render(run.path());
    assert!(html.contains("Every step (") && html.contains(", 1 failed)"));
    assert!(html.contains("marker-output"));
    assert!(html.contains("<span id=\"verdict\" class=\"verdict bad\">failed</span>"));
    let tail = html
        .split("class=\"serial-tail\">")
        .nth(1)
        .expect("serial tail shown");
    let serial = std::fs::read_to_string(fixture().join("server.serial.log")).unwrap();
    let last_line = serial.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    let last_words: String = last_line
        .chars()
        .filter(|c| c.is_alphanumeric())
        .take(12)
        .collect();
    assert!(
        tail.chars()
            .filter(|c| c.is_alphanumeric())
            .collect::<String>()
            .contains(&last_words),
        "the tail ends with the log's last line"
    );
}

#[test]
fn boot_chart_is_inline_and_blame_lists_ten_units() {
    let run = run_copy();
    let html = render(run.path());
    assert!(html.contains(
        "id=\"boot-plot\" alt=\"systemd-analyze plot\" src=\"data:image/svg+xml;base64,"
    ));
    let blame = section(&html, "blame");
    assert_eq!(blame.matches("<tr>").count() - 1, 10);
}

#[test]
fn hardening_values_stand_next_to_what_the_profile_asked() {
    let run = run_copy();
    let html = render(run.path());
    let sshd = section(&html, "sshd");
    assert!(sshd.contains(
        "<td class=\"mono\">passwordauthentication</td><td class=\"mono\">no</td><td>ssh module policy</td><td class=\"mono ok\">no</td>"
    ), "{sshd}");
    let sysctl = section(&html, "sysctl");
    assert!(sysctl.contains("<td class=\"mono\">net.ipv4.tcp_syncookies</td><td class=\"mono\">1</td><td>os_hardening.sysctl</td><td class=\"mono ok\">1</td>"));
    let fw = section(&html, "firewall");
    assert!(fw.contains("<td>IPv4</td><td>filter</td><td class=\"mono\">INPUT</td>\n    <td>DROP</td><td class=\"ok\">DROP</td>"), "{fw}");
    assert!(fw.contains("<td>IPv6</td><td>filter</td><td class=\"mono\">INPUT</td>\n    <td>DROP</td><td class=\"ok\">DROP</td>"), "{fw}");
    let tls = section(&html, "tls");
    assert!(
        tls.contains("<div class=\"ok\">TLSv1.1 refused</div>"),
        "{tls}"
    );
    assert!(
        tls.contains("<div class=\"ok\">TLSv1.3 accepted</div>"),
        "{tls}"
    );
    assert!(
        tls.contains("<div class=\"mono ok\">ECDHE-ECDSA-AES256-GCM-SHA384</div>"),
        "{tls}"
    );
}

/// The TLS policy comes from config.json (tls.*), and a port is judged by it
/// only when its row of firewall.listeners declares TLS: no rendered file,
/// no service name.
#[test]
fn tls_ports_are_judged_by_the_policy_their_row_declares() {
    let run = run_copy();
    let html = render(run.path());
    let row = row_of(
        section(&html, "exposure-table"),
        "<td class=\"num\">443</td><td>tcp</td>",
    );
    assert!(row.contains("<td>direct</td>"), "the TLS column: {row}");
    let tls = section(&html, "tls");
    assert!(tls.contains("tls.protocols, tls.ciphers"), "{tls}");
    assert!(tls.contains("groups: secp384r1"), "{tls}");
    assert!(
        tls.contains("<div class=\"mono ok\">TLS_AES_128_GCM_SHA256</div>"),
        "{tls}"
    );

    // A narrower policy makes the suites it no longer lists red, TLS 1.3 ones included.
    let config = run.path().join("build/config.json");
    let mut c = json(&config);
    c["tls"]["ciphers"] = serde_json::json!(["ECDHE-ECDSA-AES256-GCM-SHA384"]);
    c["tls"]["ciphersuites"] = serde_json::json!(["TLS_AES_256_GCM_SHA384"]);
    std::fs::write(&config, c.to_string()).unwrap();
    let tls = section(&render(run.path()), "tls").to_string();
    assert!(
        tls.contains("<div class=\"mono bad\">ECDHE-ECDSA-AES128-GCM-SHA256</div>"),
        "{tls}"
    );
    assert!(
        tls.contains("<div class=\"mono bad\">TLS_AES_128_GCM_SHA256</div>"),
        "{tls}"
    );
    assert!(
        tls.contains("<div class=\"mono ok\">TLS_AES_256_GCM_SHA384</div>"),
        "{tls}"
    );

    // A port whose row does not declare TLS is shown, not judged.
    for l in c["firewall"]["listeners"].as_array_mut().unwrap() {
        l["tls"] = "none".into();
    }
    std::fs::write(&config, c.to_string()).unwrap();
    let tls = section(&render(run.path()), "tls").to_string();
    assert!(tls.contains("not declared as TLS"), "{tls}");
    assert!(
        !tls.contains("class=\"mono bad\"") && !tls.contains("class=\"bad\""),
        "{tls}"
    );
}

#[test]
fn a_live_value_that_differs_is_red() {
    let run = run_copy();
    let path = run.path().join("facts/sshd-T.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    let changed = text.replace("passwordauthentication no", "passwordauthentication yes");
    assert_ne!(
        text, changed,
        "the recorded sshd -T has passwordauthentication"
    );
    std::fs::write(&path, changed).unwrap();
    let html = render(run.path());
    assert!(section(&html, "sshd").contains("<td class=\"mono bad\">yes</td>"));
    assert!(!html.contains("id=\"hardening-bad\" class=\"verdict ok\""));
}

/// A lynis-report.dat as Lynis 3.0.8 writes it (fields `ID|text|details|solution|`,
/// KRNL-6000's sysctls in `details[]` lines before its one suggestion).
const LYNIS_DAT: &str = "\
lynis_version=3.0.8
report_datetime_start=2026-12-02 02:10:00
suggestion[]=DEB-0880|Install fail2ban to automatically ban hosts that commit multiple authentication errors.|-|-|
suggestion[]=SSH-7408|Consider hardening SSH configuration|AllowTcpForwarding (set YES to NO)|-|
suggestion[]=FILE-6310|To decrease the impact of a full /home file system, place /home on a separate partition|-|-|
warning[]=FIRE-4512|iptables module(s) loaded, but no rules active|-|-|
details[]=KRNL-6000|sysctl|desc:Restrict access to kernel symbols;field:kernel.kptr_restrict;prefval:2;value:0;|
details[]=KRNL-6000|sysctl|desc:Disable loading of TTY line disciplines;field:dev.tty.ldisc_autoload;prefval:0;value:1;|
suggestion[]=KRNL-6000|One or more sysctl values differ from the scan profile and could be tweaked||Change sysctl value or disable test (skip-test=KRNL-6000:<sysctl-key>)|
lynis_tests_done=262
hardening_index=73
report_datetime_end=2026-12-02 02:14:00
";

/// The run with Lynis' report in lynis/ and the audit policy in build/config.json.
fn with_lynis(
    dat: &str,
    audit: serde_json::Value,
    answers: serde_json::Value,
) -> tempfile::TempDir {
    let run = run_copy();
    std::fs::create_dir_all(run.path().join("lynis")).unwrap();
    std::fs::write(run.path().join("lynis/lynis-report.dat"), dat).unwrap();
    let path = run.path().join("build/config.json");
    let mut config = json(&path);
    for (k, v) in audit.as_object().unwrap() {
        config["compliance"][k] = v.clone();
    }
    config["compliance"]["lynis_answers"] = answers;
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    run
}

fn row_with<'a>(table: &'a str, needle: &str) -> &'a str {
    let at = table
        .find(needle)
        .unwrap_or_else(|| panic!("no {needle} in {table}"));
    let start = table[..at].rfind("<tr").unwrap();
    let end = at + table[at..].find("</tr>").unwrap();
    &table[start..end]
}

#[test]
fn independent_audit_shows_every_finding_with_its_answer_or_reason() {
    let run = with_lynis(
        LYNIS_DAT,
        serde_json::json!({
            "lynis_min_index": 70,
            "lynis_accepted": [
                { "id": "FILE-6310", "reason": "the golden disk has separate partitions" },
                { "id": "KRNL-6000:kernel.kptr_restrict", "reason": "accepted for the test" },
                { "id": "NAME-4028", "reason": "stale entry" },
            ],
        }),
        serde_json::json!([{ "id": "DEB-0880", "by": "crowdsec", "how": "CrowdSec bans at the firewall" }]),
    );
    let html = render(run.path());
    assert!(html.contains("<h2 id=\"audit\">"), "section present");
    assert!(html.contains("Lynis 3.0.8"));
    assert!(html.contains("id=\"audit-index\" class=\"verdict ok\">73</span> (the profile's minimum, compliance.lynis_min_index: 70)"), "{html}");
    let table = section(&html, "audit-findings");
    assert_eq!(
        table.matches("<tr class=").count(),
        6,
        "one row per finding, KRNL-6000 per sysctl: {table}"
    );
    let answered = row_with(table, "DEB-0880");
    assert!(
        answered
            .contains("<td class=\"ok\">answered by crowdsec: CrowdSec bans at the firewall</td>"),
        "{answered}"
    );
    let accepted = row_with(table, "FILE-6310");
    assert!(
        accepted
            .contains("<td class=\"ok\">accepted: the golden disk has separate partitions</td>"),
        "{accepted}"
    );
    assert!(row_with(table, "kernel.kptr_restrict (set 0 to 2)").contains("class=\"ok\">accepted"));
    for open in [
        "dev.tty.ldisc_autoload (set 1 to 0)",
        "AllowTcpForwarding (set YES to NO)",
    ] {
        assert!(
            row_with(table, open).contains(
                "<td class=\"bad\">neither answered (compliance.lynis_answers) nor accepted (compliance.lynis_accepted)</td>"
            ),
            "{open} is open"
        );
    }
    assert!(row_with(table, "FIRE-4512").contains("<td>warning</td>"));
    assert!(
        row_with(table, "FIRE-4512").contains("class=\"bad\""),
        "a warning is red"
    );
    let failures = html.split("id=\"audit-failures\">").nth(1).unwrap();
    let failures = &failures[..failures.find("</pre>").unwrap()];
    assert_eq!(failures.lines().count(), 3, "{failures}");
    assert!(
        failures.contains("FIRE-4512")
            && failures.contains("SSH-7408")
            && failures.contains("dev.tty.ldisc_autoload")
    );
    assert!(html.contains("id=\"audit-verdict\" class=\"verdict bad\">73 / 70</span>"));
    assert!(
        html.contains("NAME-4028 (compliance.lynis_accepted)"),
        "stale entries are named"
    );
}

#[test]
fn a_low_index_is_red_and_a_clean_audit_passes() {
    let low = with_lynis(LYNIS_DAT, serde_json::json!({}), serde_json::json!([]));
    let html = render(low.path());
    assert!(html.contains("id=\"audit-index\" class=\"verdict bad\">73</span> (the profile's minimum, compliance.lynis_min_index: 90)"), "the default minimum is 90");
    assert!(html.contains("hardening index 73 is below compliance.lynis_min_index = 90"));

    let clean = "lynis_version=3.0.8\nhardening_index=91\nsuggestion[]=LYNIS|This release is more than 4 months old.|-|-|\n";
    let run = with_lynis(
        clean,
        serde_json::json!({ "lynis_accepted": [{ "id": "LYNIS", "reason": "Debian 12 ships 3.0.8" }] }),
        serde_json::json!([]),
    );
    let html = render(run.path());
    assert!(html.contains("id=\"audit-verdict\" class=\"verdict ok\">91 / 90</span>"));
    assert!(!html.contains("id=\"audit-failures\""));
    // The verdict the page shows is the test's own rule.
    let v = hardroot::lynis::judge_files(
        &run.path().join("lynis/lynis-report.dat"),
        &run.path().join("build/config.json"),
    )
    .unwrap();
    assert!(v.passed, "{:?}", v.failures);
}

#[test]
fn a_run_without_lynis_says_so() {
    let run = run_copy();
    let html = render(run.path());
    assert!(html.contains("id=\"audit-missing\""));
    assert!(html.contains("id=\"audit-verdict\" class=\"verdict na\">not run</span>"));
}

#[test]
fn against_an_older_image_lists_changed_files_and_packages() {
    let run = run_copy();
    let old = tempfile::tempdir().unwrap();
    let mut m = json(&fixture().join("build/manifest.json"));
    let entries = m["entries"].as_array_mut().unwrap();
    let file = entries.iter().position(|e| e["type"] == "file").unwrap();
    let changed_path = entries[file]["path"].as_str().unwrap().to_string();
    entries[file]["sha256"] = "00".into();
    entries.push(serde_json::json!({"path": "etc/only-in-old", "type": "file", "sha256": "11"}));
    m["root_hash"] = "old-root-hash".into();
    std::fs::write(old.path().join("manifest.json"), m.to_string()).unwrap();
    let mut im = json(&fixture().join("build/image-manifest.json"));
    let pkgs = im["packages"].as_array_mut().unwrap();
    pkgs[0]["version"] = "0.0-old".into();
    pkgs.push(serde_json::json!({"name": "telnetd", "version": "1", "architecture": "amd64"}));
    std::fs::write(old.path().join("image-manifest.json"), im.to_string()).unwrap();

    let html = hardroot::report::render(run.path(), None, Some(old.path())).unwrap();
    let files = section(&html, "diff-files");
    let changed = html_escape(&format!("/{changed_path}"));
    assert!(
        files.contains(&format!("{changed}</td><td>changed: content")),
        "{files}"
    );
    let gone = html_escape("/etc/only-in-old");
    assert!(
        files.contains(&format!("{gone}</td><td class=\"warn\">removed")),
        "{files}"
    );
    let packages = section(&html, "diff-packages");
    assert!(packages.contains("telnetd 1</td><td class=\"warn\">removed"));
    assert!(packages.contains("0.0-old → "));
    assert!(html.contains("old-root-hash → "));
    assert!(!html.contains("diff-files-none") && !html.contains("diff-packages-none"));

    // Against itself: nothing changed, and the page says so.
    let same = hardroot::report::render(run.path(), None, Some(&fixture())).unwrap();
    assert!(same.contains("No overlay file added, removed or changed."));
    assert!(same.contains("No package added, removed or upgraded."));
}

#[test]
fn the_page_loads_nothing_from_outside() {
    let run = run_copy();
    let html = render(run.path());
    assert!(html.contains(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src &#x27;none&#x27;; style-src &#x27;unsafe-inline&#x27;; img-src data:\">"
    ) || html.contains(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
    ));
    for attr in ["src=\"", "href=\"", "url("] {
        for (i, _) in html.match_indices(attr) {
            let value = &html[i + attr.len()..];
            assert!(
                value.starts_with("data:"),
                "{attr} loads something: {}",
                &value[..value.len().min(80)]
            );
        }
    }
    assert!(!html.contains("<script"), "no scripts");
    let re = regex::Regex::new(r"(?i)\bhttps?://").unwrap();
    assert!(!re.is_match(&html), "no http(s) URL anywhere on the page");
}

#[test]
fn cli_writes_the_page_and_a_missing_run_is_a_clear_error() {
    let run = run_copy();
    let out = run.path().join("page.html");
    let st = Command::new(env!("CARGO_BIN_EXE_hardroot"))
        .args(["report"])
        .arg(run.path())
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .starts_with("<!DOCTYPE html>")
    );

    let empty = tempfile::tempdir().unwrap();
    let st = Command::new(env!("CARGO_BIN_EXE_hardroot"))
        .arg("report")
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(3));
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(err.contains("has no results.json"), "{err}");
}

#[test]
fn manifests_kept_per_machine_by_the_driver_are_read_too() {
    let run = run_copy();
    let build = run.path().join("build");
    std::fs::rename(
        build.join("manifest.json"),
        run.path().join("server.manifest.json"),
    )
    .unwrap();
    std::fs::rename(
        build.join("config.json"),
        run.path().join("server.config.json"),
    )
    .unwrap();
    let html = render(run.path());
    let m = json(&run.path().join("server.manifest.json"));
    assert!(html.contains(m["root_hash"].as_str().unwrap()));
    assert!(section(&html, "exposure-table").contains("\">ssh</td>"));
}

#[test]
fn snapshot_copies_the_image_manifests_into_the_run() {
    let run = run_copy();
    std::fs::remove_dir_all(run.path().join("build")).unwrap();
    let html = render(run.path());
    assert!(html.contains(&html_escape(
        "not found (no manifest.json in RUN/build or RUN; pass --image DIR)"
    )));
    let req = hardroot::report::Request {
        run: run.path().to_path_buf(),
        images: vec![fixture().join("build")],
        fresh: true,
        against: None,
        out: run.path().join("r.html"),
    };
    hardroot::report::write(&req).unwrap();
    assert!(run.path().join("build/manifest.json").is_file());
    assert!(
        run.path()
            .join("build/overlay/etc/iptables/rules.v4")
            .is_file()
    );
    let m = json(&fixture().join("build/manifest.json"));
    let page = std::fs::read_to_string(run.path().join("r.html")).unwrap();
    assert!(page.contains(m["root_hash"].as_str().unwrap()));

    // `hardroot report --image BUILD` later adds to the snapshot: the image
    // manifest copied at the end of the run stays.
    let only_build = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture().join("build/config.json"),
        only_build.path().join("config.json"),
    )
    .unwrap();
    let st = Command::new(env!("CARGO_BIN_EXE_hardroot"))
        .arg("report")
        .arg(run.path())
        .arg("--image")
        .arg(only_build.path())
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(run.path().join("build/image-manifest.json").is_file());
    assert!(run.path().join("build/manifest.json").is_file());
}

/// Chromium opens the page offline: it renders (a screenshot of real size),
/// the DOM has every section, and the page requested nothing.
#[test]
fn headless_chromium_renders_the_page() {
    let Some(chromium) = ["chromium", "chromium-browser"].iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        panic!("chromium is not installed: scripts/deps.sh installs it (Debian package chromium)");
    };
    let run = run_copy();
    let page = run.path().join("report.html");
    std::fs::write(&page, render(run.path())).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let shot = run.path().join("shot.png");
    let base = |c: &mut Command| {
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    let mut c = Command::new(chromium);
    base(&mut c);
    c.arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1280,2000")
        .arg(format!("file://{}", page.display()));
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("a screenshot was written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 20_000,
        "the screenshot shows a page, not a blank ({} bytes)",
        png.len()
    );

    let (dom, console) = dump_dom(chromium, &base, &page);
    for id in [
        "identity",
        "exposure-table",
        "subtests",
        "boot-plot",
        "sshd",
        "sysctl",
        "firewall",
        "tls",
        "diff",
    ] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "the DOM lacks #{id}");
    }
    assert!(
        !console.contains("Content Security Policy") && !console.contains(":CONSOLE"),
        "the page tried to load something or logged to the console: {console}"
    );

    // The check can fail: the same page with one outside load is caught by the CSP.
    let html = std::fs::read_to_string(&page).unwrap();
    let bad = run.path().join("bad.html");
    std::fs::write(
        &bad,
        html.replace("<body>", "<body><img src=\"http://127.0.0.1:9/x.png\">"),
    )
    .unwrap();
    let (_, console) = dump_dom(chromium, &base, &bad);
    assert!(
        console.contains("violates the following Content Security Policy"),
        "{console}"
    );
}

/// The DOM after load, and Chromium's log (console messages, CSP reports).
fn dump_dom(chromium: &str, base: &dyn Fn(&mut Command), page: &Path) -> (String, String) {
    let mut c = Command::new(chromium);
    base(&mut c);
    c.args(["--enable-logging=stderr", "--v=0", "--dump-dom"])
        .arg(format!("file://{}", page.display()));
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2F;")
}

/// tests/fixtures/report/accept/: exposure.json, server.config.json and
/// boot-1/ss.txt as the acceptance test (vm-tests/xmpp-server) wrote them in
/// a real run of the XMPP image, with its results.json; the config has
/// firewall.exposure_rules as builds now write it. The report must read that
/// nested shape (the driver's probe_exposure writes it) as it is.
#[test]
fn the_acceptance_tests_xmpp_exposure_matrix_is_read_as_written() {
    let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report/accept");
    let html = render(&run);
    let table = section(&html, "exposure-table");
    let config = json(&run.join("server.config.json"));
    let declared = config["firewall"]["listeners"].as_array().unwrap().len();
    assert_eq!(table.matches("<tr>").count() - 1, declared);
    assert_eq!(
        table.matches("undeclared").count(),
        0,
        "every socket of ss.txt is declared"
    );
    let cells = |start: &str| -> Vec<String> {
        let row = row_of(table, start);
        row.split("<td class=\"")
            .skip(1)
            .filter_map(|c| c.split('"').next())
            .filter(|c| ["ok", "bad", "na", "warn"].contains(c))
            .map(String::from)
            .collect()
    };
    // SSH: trusted only, both families.
    assert_eq!(
        cells("<td class=\"num\">22</td><td>tcp</td>"),
        ["ok", "ok", "ok"]
    );
    // The admin listener binds the IPv4 address only: no v6 is as declared.
    let admin = row_of(table, "<td class=\"num\">6443</td>");
    assert!(
        admin.contains("v4 yes · v6 no") && !admin.contains("class=\"bad\""),
        "{admin}"
    );
    // The relay range is judged by the firewall letting the probe through.
    assert_eq!(
        cells("<td class=\"num\">49152–65535</td><td>tcp</td>"),
        ["na", "ok", "ok"]
    );
    // In that run STUN answered no probe: public but unreachable is red.
    assert_eq!(
        cells("<td class=\"num\">3478</td><td>udp</td>"),
        ["ok", "bad", "bad"]
    );
}

/// The run with the guest's controls.tsv in controls/ and module compliance's options in build/config.json.
fn with_controls(tsv: Option<&str>, compliance: serde_json::Value) -> tempfile::TempDir {
    let run = run_copy();
    if let Some(tsv) = tsv {
        std::fs::create_dir_all(run.path().join("controls")).unwrap();
        std::fs::write(run.path().join("controls/controls.tsv"), tsv).unwrap();
    }
    let path = run.path().join("build/config.json");
    let mut config = json(&path);
    config["compliance"] = compliance;
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    run
}

fn compliance_policy() -> serde_json::Value {
    serde_json::json!({
        "benchmark": "CIS Debian Linux 12 Benchmark, Level 1 – Server",
        "min_percent": 60,
        "controls": [
            { "id": "5.1.16", "title": "sshd MaxAuthTries at most 4", "check": "sshd_between maxauthtries 1 4" },
            { "id": "1.1.1.10", "title": "ten", "check": "true" },
            { "id": "1.1.1.9", "title": "usb-storage kernel module not available", "check": "module_off usb-storage" },
        ],
        "accepted_controls": [{ "id": "1.4.1", "reason": "systemd-boot has no password" }],
    })
}

#[test]
fn benchmark_controls_show_each_live_result_and_every_accepted_reason() {
    let tsv = "met\t1.1.1.9\tusb-storage: install /bin/false, blacklisted, not loaded\nmet\t1.1.1.10\t\nfailed\t5.1.16\tmaxauthtries 6 (want 1..4)\n";
    let html = render(with_controls(Some(tsv), compliance_policy()).path());
    assert!(
        html.contains("id=\"controls-verdict\" class=\"verdict bad\">2 / 4</span>"),
        "{html}"
    );
    let table = section(&html, "controls-table");
    // Benchmark order: 1.1.1.9 before 1.1.1.10, the accepted 1.4.1 among them.
    let at = |id: &str| {
        table
            .find(&format!(">{id}<"))
            .unwrap_or_else(|| panic!("no {id}"))
    };
    assert!(
        at("1.1.1.9") < at("1.1.1.10")
            && at("1.1.1.10") < at("1.4.1")
            && at("1.4.1") < at("5.1.16")
    );
    assert!(row_with(table, ">5.1.16<").contains("class=\"bad\">failed</td>"));
    assert!(row_with(table, ">5.1.16<").contains("maxauthtries 6 (want 1..4)"));
    assert!(row_with(table, ">1.4.1<").contains("systemd-boot has no password"));
    assert!(row_with(table, ">1.1.1.9<").contains("class=\"ok\">met</td>"));
    let failures = html.split("id=\"controls-failures\">").nth(1).unwrap();
    assert!(
        failures.starts_with("5.1.16 sshd MaxAuthTries at most 4: not met"),
        "{failures}"
    );
}

#[test]
fn benchmark_controls_pass_when_every_declared_one_is_met_and_say_when_not_run() {
    let tsv = "met\t1.1.1.9\t\nmet\t1.1.1.10\t\nmet\t5.1.16\tmaxauthtries 3\n";
    let html = render(with_controls(Some(tsv), compliance_policy()).path());
    assert!(
        html.contains("id=\"controls-verdict\" class=\"verdict ok\">3 / 4</span>"),
        "{html}"
    );
    assert!(html.contains("3 of 4 (75.0 %)"), "{html}");
    let html = render(with_controls(None, compliance_policy()).path());
    assert!(html.contains("id=\"controls-verdict\" class=\"verdict na\">not run</span>"));
    assert!(html.contains("id=\"controls-missing\""));
}

/// A CycloneDX document shaped like the image stage's: three packages, two
/// with DEP-5 licences, one overlay file.
fn small_sbom() -> serde_json::Value {
    let pkg = |name: &str, kib: u64, licences: &[&str]| {
        let mut c = serde_json::json!({
            "type": "library", "name": name, "version": "1",
            "purl": format!("pkg:deb/debian/{name}@1?arch=amd64&distro=debian-12"),
            "properties": [{ "name": "hardroot:installed-size-kib", "value": kib.to_string() }],
        });
        if !licences.is_empty() {
            c["licenses"] = licences
                .iter()
                .map(|l| serde_json::json!({ "license": { "name": l } }))
                .collect();
        }
        c
    };
    serde_json::json!({
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "components": [
            pkg("libc6", 12000, &["LGPL-2.1+", "GPL-2+"]),
            pkg("bash", 7000, &["GPL-3+"]),
            pkg("tiny", 10, &[]),
            { "type": "file", "name": "/etc/hostname",
              "properties": [{ "name": "hardroot:module", "value": "system" }] },
        ],
    })
}

#[test]
fn bill_of_materials_counts_packages_and_licences_and_shows_the_verify_verdict() {
    let run = run_copy();
    let build = run.path().join("build");
    let html = render(run.path());
    assert!(
        html.contains("has no sbom.cdx.json"),
        "an image without an SBOM says so"
    );

    std::fs::write(build.join("sbom.cdx.json"), small_sbom().to_string()).unwrap();
    let html = render(run.path());
    assert!(html.contains("<span id=\"sbom-packages\">3</span>"));
    let licences = section(&html, "licences");
    for (name, n) in [("GPL-2+", 1), ("GPL-3+", 1), ("LGPL-2.1+", 1)] {
        assert!(
            licences.contains(&format!(
                "<td class=\"mono\">{name}</td><td class=\"num\">{n}</td>"
            )),
            "{name}: {licences}"
        );
    }
    let largest = section(&html, "largest");
    let (libc, bash) = (
        largest.find("libc6").unwrap(),
        largest.find("bash").unwrap(),
    );
    assert!(libc < bash, "largest first: {largest}");
    assert!(html.contains("Not verified"));

    let verdict = serde_json::json!({ "reproduced": true, "file": "disk.img", "sha256": "ab12" });
    std::fs::write(build.join("verify.json"), verdict.to_string()).unwrap();
    assert!(render(run.path()).contains("disk.img rebuilt cold, byte for byte: sha256 ab12"));
    let failed =
        serde_json::json!({ "reproduced": false, "error": "partition 3 \"home\" (/home) differs" });
    std::fs::write(build.join("verify.json"), failed.to_string()).unwrap();
    let html = render(run.path());
    assert!(html.contains("Verify found differences"));
    let detail = section(&html, "verify-detail");
    assert!(
        detail.contains("home") && detail.contains("differs"),
        "{detail}"
    );
}

#[test]
fn the_parameters_a_run_used_are_listed_with_the_defaults_they_changed() {
    let run = run_copy();
    let html = render(run.path());
    assert!(
        !html.contains("id=\"parameters\""),
        "a run without parameters shows none"
    );
    let path = run.path().join("results.json");
    let mut results = json(&path);
    results["parameters"] = serde_json::json!([
        { "name": "load_clients", "value": 50, "default": 200, "description": "clients at once" },
        { "name": "mode", "value": "soak", "default": "soak", "description": null },
    ]);
    std::fs::write(&path, results.to_string()).unwrap();
    let html = render(run.path());
    let line = html.split("<p id=\"parameters\">").nth(1).unwrap();
    let line = &line[..line.find("</p>").unwrap()];
    assert_eq!(
        line,
        "Parameters: <span class=\"mono\" title=\"clients at once\">load_clients = 50</span> (default 200), \
         <span class=\"mono\">mode = &quot;soak&quot;</span>"
    );
}

/// The run with the acceptance test's load and faults record
/// (tests/fixtures/report/load-faults/) and, when given, the build's restart policy.
fn with_load_faults(record: Option<&str>, units: Option<serde_json::Value>) -> tempfile::TempDir {
    let run = run_copy();
    if let Some(text) = record {
        std::fs::write(run.path().join("load-faults.json"), text).unwrap();
    }
    if let Some(units) = units {
        let path = run.path().join("build/config.json");
        let mut config = json(&path);
        config["supervision"] = serde_json::json!({ "units": units });
        std::fs::write(&path, config.to_string()).unwrap();
    }
    run
}

fn load_faults_fixture() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/report/load-faults/load-faults.json");
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn load_and_faults_show_the_restart_policy_the_figures_and_one_row_per_fault() {
    let units = serde_json::json!([{
        "unit": "ejabberd.service", "restart": "on-failure", "restart_sec": 2,
        "start_limit_burst": 5, "start_limit_interval_sec": 60,
        "why": "a crashed XMPP server comes back on its own",
    }]);
    let html = render(with_load_faults(Some(&load_faults_fixture()), Some(units)).path());
    assert!(html.contains("<h2 id=\"load-faults\">"), "section present");
    let policy = section(&html, "restart-policy");
    assert_eq!(policy.matches("<tr>").count() - 1, 1);
    assert!(
        policy.contains(
            "<td class=\"mono\">ejabberd.service</td><td class=\"mono\">on-failure</td><td class=\"num\">2 s</td><td class=\"num\">5 in 60 s</td><td>a crashed XMPP server comes back on its own</td>"
        ),
        "{policy}"
    );
    let figures = section(&html, "load-figures");
    for (what, value) in [
        ("clients × messages per client", "200 × 2"),
        ("logins that succeeded", "200 of 200"),
        ("time to log every client in", "41.2 s (4.85 logins/s)"),
        ("messages delivered / sent", "400 / 400"),
        ("duplicates", "0"),
        ("missing", "0"),
        ("latency p50 / p95 / p99", "120 / 800 / 1500 ms"),
        ("guest CPU during the load", "87 %"),
        ("guest memory used / total", "900 / 1990 MB"),
        ("CrowdSec decisions against the load client", "0"),
    ] {
        let row = format!(
            "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
            html_escape(what),
            html_escape(value)
        );
        assert!(figures.contains(&row), "no {row} in {figures}");
    }
    assert!(figures.contains("<td>verdict (the test's)</td><td class=\"ok\">pass</td>"));
    let faults = section(&html, "faults");
    assert_eq!(faults.matches("<tr>").count() - 1, 2, "one row per fault");
    let crash = row_with(faults, "kill -9 ejabberd.service");
    assert!(
        crash.contains("<td>crash</td><td class=\"mono\">ejabberd.service</td><td class=\"ok\">pass</td><td class=\"num\">6.7</td><td>back after 6.7 s; 0 of 312 acknowledged messages lost</td>"),
        "{crash}"
    );
    let power = row_with(faults, "power cut while storing offline messages");
    assert!(
        power.contains("<td>power</td><td class=\"mono\">—</td><td class=\"bad\">fail</td><td class=\"num\">—</td><td>3 of 40 offline messages lost</td>"),
        "a missing unit and null seconds are dashes: {power}"
    );
    assert!(
        html.contains("id=\"load-faults-verdict\" class=\"verdict bad\">2 / 3</span>"),
        "the load and two faults, one failed"
    );
}

#[test]
fn load_and_faults_say_when_not_run_and_name_a_malformed_record() {
    // An older build without supervision.units, a test without the load part.
    let html = render(with_load_faults(None, None).path());
    assert!(html.contains("id=\"load-faults-not-run\""));
    assert!(html.contains("the test did not run the load and fault part"));
    assert!(html.contains("id=\"load-faults-verdict\" class=\"verdict na\">not run</span>"));
    assert!(html.contains("id=\"restart-policy-missing\""));
    assert!(html.contains("has no supervision.units"));
    assert!(!html.contains("id=\"restart-policy\""));

    // A fault without its outcome: the file, the shape and serde's line and column.
    let broken = "{\n  \"faults\": [\n    {\"name\": \"kill\"}\n  ]\n}\n";
    let html = render(with_load_faults(Some(broken), None).path());
    let error = html.split("id=\"load-faults-error\">").nth(1).unwrap();
    let error = &error[..error.find("</p>").unwrap()];
    assert!(
        error.contains("load-faults.json is not the load and faults record")
            && error.contains("missing field `ok` at line 3 column"),
        "{error}"
    );
    assert!(html.contains("id=\"load-faults-verdict\" class=\"verdict bad\">unreadable</span>"));
    // Also among the page's input problems at the top, like every unreadable input.
    assert!(html.contains("<p class=\"note bad\">"));
    let html = render(with_load_faults(Some("\"just text\""), None).path());
    assert!(
        html.contains("expected struct LoadFaults at line 1 column"),
        "{}",
        section(&html, "load-faults-error")
    );
}
