//! Every integration test, in one test binary.
//!
//! Each `tests/NAME.rs` is a module here rather than a binary of its own:
//! 34 binaries each linked the whole library (tokio, rustls, Rhai, ...), and
//! those links were a sixth of a CI run (issue 30, docs/benchmarks.md). One
//! binary also lets the fast tests of different files share the two test
//! threads instead of waiting for each other file by file.
//!
//! Cargo.toml sets `autotests = false`, so a file in tests/ runs only if it
//! is listed here; `every_test_file_is_a_module_of_the_suite` fails when one
//! is not. Run one file's tests with its module name as the filter:
//!
//!     cargo test --test suite -- vmtest::            # or: image::, report::, ...
//!     cargo test --test suite -- --ignored vm_xmpp::

mod common;
mod image_support;
mod registry_support;

mod bad_input;
mod build;
mod cli_help;
mod deps;
mod docs;
mod flake;
mod fuzz_regressions;
mod hostile;
mod image;
mod image_boot;
mod image_cache_gc;
mod image_cli;
mod image_fleet;
mod image_fresh;
mod image_hygiene;
mod image_shared_cache;
mod interrupt;
mod interrupt_image;
mod json;
mod modules_doc;
mod readme;
mod real_tools_cis;
mod real_tools_servers;
mod real_tools_services;
mod real_tools_system;
mod registry;
mod report;
mod reproducible_xmpp;
mod run;
mod sbom;
mod verify;
mod vm_servers;
mod vm_xmpp;
mod vmtest;
mod vmtest_backdoor_module;

use std::collections::BTreeMap;
use std::path::Path;

/// With `autotests = false`, a new tests/NAME.rs that nobody lists here
/// would compile nowhere and pass silently.
#[test]
fn every_test_file_is_a_module_of_the_suite() {
    let dir = common::repo().join("tests");
    let suite = std::fs::read_to_string(dir.join("suite.rs")).expect("tests/suite.rs");
    let missing: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".rs").map(str::to_string))
        .filter(|m| m != "suite" && !suite.contains(&format!("\nmod {m};\n")))
        .collect();
    assert!(
        missing.is_empty(),
        "tests/{{{}}}.rs: not a module of tests/suite.rs, so never compiled: add `mod NAME;` there",
        missing.join(",")
    );
}

/// The ignored tests (the ones that bootstrap Debian or boot QEMU) this very
/// binary holds, as libtest lists them: "module::name".
fn ignored_tests() -> Vec<String> {
    let me = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(me)
        .args(["--ignored", "--list", "--format", "terse"])
        .output()
        .expect("list the ignored tests");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect()
}

/// The lanes scripts/test.sh runs the ignored tests in: "vm" after the fast
/// tests, beside "image"; then "alone".
const LANES: [&str; 3] = ["alone", "vm", "image"];

/// tests/budget.toml: what each ignored test costs and in which lane it
/// runs, and the budget of the whole run (docs/testing.md, "The time budget").
struct Budget {
    total: i64,
    /// deps, build, compiling the tests
    before: i64,
    /// the fast tests
    fast: i64,
    /// test name -> (seconds, lane)
    tests: BTreeMap<String, (i64, String)>,
    /// lane -> how many of its tests run at once
    threads: BTreeMap<String, i64>,
}

impl Budget {
    fn read(path: &Path) -> Budget {
        let text = std::fs::read_to_string(path).expect("tests/budget.toml");
        let doc: toml_edit::DocumentMut = text.parse().expect("tests/budget.toml is TOML");
        let int = |key: &str| {
            doc[key].as_integer().unwrap_or_else(|| {
                panic!("tests/budget.toml: `{key}` must be an integer (seconds)")
            })
        };
        let tests = doc["ignored"]
            .as_table_like()
            .expect("tests/budget.toml: an [ignored] table")
            .iter()
            .map(|(name, row)| (name.to_string(), Self::row(name, row)))
            .collect();
        let threads = LANES
            .iter()
            .map(|l| {
                let n = doc["threads"][*l].as_integer().filter(|n| *n > 0);
                let n = n.unwrap_or_else(|| {
                    panic!("tests/budget.toml: [threads] {l} must be a positive integer")
                });
                (l.to_string(), n)
            })
            .collect();
        Budget {
            threads,
            total: int("budget_seconds"),
            before: int("before_seconds"),
            fast: int("fast_seconds"),
            tests,
        }
    }

    fn row(name: &str, row: &toml_edit::Item) -> (i64, String) {
        let seconds = row.get("seconds").and_then(|v| v.as_integer());
        let lane = row.get("lane").and_then(|v| v.as_str());
        match (seconds, lane) {
            (Some(s), Some(l)) if LANES.contains(&l) => (s, l.to_string()),
            _ => panic!(
                "tests/budget.toml: [ignored] \"{name}\" must be {{ seconds = INTEGER, lane = one of {LANES:?} }}"
            ),
        }
    }

    /// The lane's expected time: its tests' sum over its threads, or its
    /// longest test when that is longer.
    fn lane(&self, lane: &str) -> i64 {
        let secs = || {
            self.tests
                .values()
                .filter(|(_, l)| l == lane)
                .map(|(s, _)| *s)
        };
        let threads = self.threads[lane];
        let spread = (secs().sum::<i64>() + threads - 1) / threads;
        spread.max(secs().max().unwrap_or(0))
    }

    /// The run's expected time, as scripts/test.sh orders it: the fast
    /// tests then the "vm" lane, beside the "image" lane; then "alone".
    fn expected(&self) -> i64 {
        self.before + (self.fast + self.lane("vm")).max(self.lane("image")) + self.lane("alone")
    }
}

/// Every ignored test has its expected cost and lane in tests/budget.toml,
/// and the whole fits the run's budget: a new VM test comes with its price,
/// and whoever adds it sees the sum (and what has to give when it does not fit).
#[test]
fn every_ignored_test_has_a_cost_and_the_run_fits_the_budget() {
    let budget = Budget::read(&common::repo().join("tests/budget.toml"));
    let ignored = ignored_tests();
    assert!(!ignored.is_empty(), "found no ignored test to check");
    let unpriced: Vec<&String> = ignored
        .iter()
        .filter(|t| !budget.tests.contains_key(*t))
        .collect();
    assert!(
        unpriced.is_empty(),
        "ignored tests without a row in tests/budget.toml: {unpriced:?}; add each to [ignored] \
         with its seconds on the CI machine (benches/ci-times.py LOG measures them) and its lane, \
         or scripts/test.sh never runs it"
    );
    let stale: Vec<&String> = budget
        .tests
        .keys()
        .filter(|t| !ignored.contains(t))
        .collect();
    assert!(
        stale.is_empty(),
        "tests/budget.toml has rows for tests that do not exist (renamed or removed?): {stale:?}"
    );
    let [alone, vm, image] = LANES.map(|l| budget.lane(l));
    eprintln!(
        "time budget: before {} s + max(fast {} s + vm {vm} s, image {image} s) + alone {alone} s = {} s of {} s",
        budget.before,
        budget.fast,
        budget.expected(),
        budget.total
    );
    assert!(
        budget.expected() <= budget.total,
        "the run's expected time, {} s (before {} s + the longer of fast {} s + vm {vm} s and \
         image {image} s + alone {alone} s), exceeds the budget of {} s: share a boot or a \
         bootstrap with an existing test (docs/testing.md, \"The time budget\")",
        budget.expected(),
        budget.before,
        budget.fast,
        budget.total
    );
}
