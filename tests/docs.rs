//! Generated documentation stays current, and the generators work.
use crate::common;
use common::*;

#[test]
fn options_manual_matches_the_modules() {
    let o = hardroot(&repo(), &["options", "--markdown"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let committed = std::fs::read_to_string(repo().join("docs/options.md")).unwrap_or_default();
    assert!(
        text(&o.stdout) == committed,
        "docs/options.md is stale: run `cargo run -- options --markdown > docs/options.md` and commit it"
    );
}

#[test]
fn options_json_lists_every_declared_option_with_type_and_description() {
    let o = hardroot(
        &repo(),
        &["options", "--json", "--modules", "tests/fixtures/modules"],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let names: Vec<&str> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "fw.listeners",
            "fw.trusted",
            "svc.admin_bind",
            "svc.internal",
            "svc.port"
        ]
    );
    let port = &v[4];
    assert_eq!(port["type"], "port");
    assert_eq!(port["default"], 443);
    assert_eq!(port["description"], "port");
    assert_eq!(
        v[0]["fields"]["exposure"]["type"],
        "one of \"public\", \"trusted\", \"localhost\", \"blocked\""
    );
}

#[test]
fn completions_and_man_page_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let o = hardroot(&repo(), &["completions", shell]);
        assert!(
            o.status.success() && text(&o.stdout).contains("vm-test"),
            "{shell}"
        );
    }
    let o = hardroot(&repo(), &["man"]);
    assert!(text(&o.stdout).contains(".TH hardroot 1"));
}
