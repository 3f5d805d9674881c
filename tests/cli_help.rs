//! The help a newcomer reads: every verb and every argument says what it is,
//! the examples in `hardroot --help` are valid command lines, and piping a
//! verb's output into `head` ends quietly.
use crate::common;
use clap::{CommandFactory, Parser};
use common::*;
use hardroot::cli::Cli;
use std::io::Read;
use std::process::{Command, Stdio};

#[test]
fn every_verb_and_argument_has_a_description() {
    let cli = Cli::command();
    let mut missing = Vec::new();
    for verb in cli.get_subcommands() {
        if verb.get_about().is_none() {
            missing.push(format!("hardroot {}", verb.get_name()));
        }
        for arg in verb.get_arguments() {
            let generated = ["help", "version"].contains(&arg.get_id().as_str());
            if !generated && arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("hardroot {} {}", verb.get_name(), arg.get_id()));
            }
        }
    }
    assert!(missing.is_empty(), "no help text for: {missing:?}");
}

/// The "hardroot …" lines of an after_help, without their trailing comment
/// (two spaces or more separate it).
fn examples(help: &str) -> Vec<Vec<String>> {
    help.lines()
        .filter(|l| l.starts_with("  hardroot "))
        .map(str::trim)
        .map(|l| {
            l.split("  ")
                .next()
                .unwrap_or(l)
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .collect()
}

#[test]
fn the_examples_in_the_help_are_valid_command_lines() {
    let mut cli = Cli::command();
    let mut all = examples(&cli.render_long_help().to_string());
    assert!(all.len() >= 5, "hardroot --help lost its examples");
    for verb in cli.get_subcommands_mut() {
        all.extend(examples(&verb.render_long_help().to_string()));
    }
    for words in all {
        if let Err(e) = Cli::try_parse_from(&words) {
            panic!("`{}` from the help does not parse:\n{e}", words.join(" "));
        }
        // Every file the example names is in the repository.
        for w in words.iter().filter(|w| w.contains('/')) {
            assert!(
                repo().join(w).exists(),
                "the help names {w}, which does not exist"
            );
        }
    }
}

#[test]
fn a_closed_pipe_ends_a_printing_verb_quietly() {
    let mut child = Command::new(bin())
        .args(["options", "--json"])
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hardroot");
    let mut first = [0u8; 16];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("some output");
    // stdout is dropped (closed) here, like `| head -c 16`.
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    child.wait().expect("wait");
    assert!(
        !err.contains("panicked"),
        "hardroot panicked on a closed pipe:\n{err}"
    );
}
