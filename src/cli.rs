//! Command line: verbs and their dispatch. Each verb's work lives in its layer;
//! this file only parses arguments and prints.
use crate::commands::args::{
    BuildArgs, CacheArgs, CheckArgs, CompletionsArgs, DiffArgs, ExplainArgs, ImageArgs,
    OptionsArgs, PullArgs, PushArgs, ReportArgs, RunArgs, VerifyArgs, VmTestArgs,
};
use crate::diag::{Errors, Located};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "hardroot",
    version,
    about = "Declarative, reproducible, VM-tested server images",
    long_about = "hardroot turns a profile (profiles/*.toml) and a tree of modules (modules/<name>/) into a \
                  reproducible root-filesystem overlay, a Debian 12 disk image, and a VM test that proves it.\n\n\
                  Pipeline: profile → evaluate → render → emit (build) → image → vm-test.",
    after_help = "Examples:\n  \
                  hardroot check profiles/system-only.toml          evaluate and run every assertion\n  \
                  hardroot build profiles/system-only.toml -o out   write the overlay; prints its root hash\n  \
                  hardroot explain profiles/system-only.toml ssh.port\n  \
                  hardroot image profiles/system-only.toml -o img   Debian base (cached) + overlay → ext4 image\n  \
                  hardroot image profiles/minimal.toml profiles/web.toml -o fleet --jobs 2\n  \
                                                    several profiles: OUT/<profile>/ each (docs/fleet.md)\n  \
                  hardroot vm-test --image img vm-tests/smoke      boot the image and run a VM test against it\n  \
                  hardroot run profiles/system-only.toml            boot it here, like `mkosi qemu`\n\n\
                  Every verb that reports takes --json (docs/json.md). Docs: README.md, docs/modules.md, \
                  docs/testing.md, docs/options.md.\n\n\
                  Exit codes: 0 success; 1 the profile or a module is wrong (the message names file:line:col), \
                  or `verify` found a difference; 2 bad command line; 3 the environment failed (I/O, a missing tool, not root); 4 a VM test failed."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Evaluate a profile and write its overlay: OUT/overlay/, overlay.tar.gz, manifest.json, config.json
    Build(BuildArgs),
    /// Evaluate a profile and run every assertion; write nothing
    Check(CheckArgs),
    /// The reference of every option of every module (like the NixOS options manual)
    Options(OptionsArgs),
    /// Why an option has its value (like nixos-option), or which module and lines made a file
    Explain(ExplainArgs),
    /// Compare two build outputs by their manifests
    Diff(DiffArgs),
    /// Build a profile into a disk image (overlay + cached Debian base)
    Image(ImageArgs),
    /// Rebuild an image cold from its image-manifest.json and compare byte for byte
    Verify(VerifyArgs),
    /// List or prune the cache of Debian bases that `image` builds from
    Cache(CacheArgs),
    /// Publish an image folder to an OCI registry as one artifact; prints its digest
    Push(PushArgs),
    /// Fetch an image a `push` published; every file is checked against the manifest before it is written
    Pull(PullArgs),
    /// Boot the image in QEMU and run a test from vm-tests/
    VmTest(VmTestArgs),
    /// Write the acceptance report (one self-contained HTML page) of a finished VM test
    Report(ReportArgs),
    /// Build a profile's image and boot it in QEMU, like `mkosi qemu`: console here, SSH on 127.0.0.1
    Run(RunArgs),
    /// Print shell completions: hardroot completions bash > /etc/bash_completion.d/hardroot
    Completions(CompletionsArgs),
    /// Print the man page (roff): hardroot man > hardroot.1
    Man,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if only_prints(&cli.command) {
        die_quietly_on_closed_pipe();
    }
    let result = match &cli.command {
        Command::Build(a) => crate::commands::build(a),
        Command::Check(a) => crate::commands::check(a),
        Command::Options(a) => crate::commands::options(a),
        Command::Explain(a) => crate::commands::explain(a),
        Command::Diff(a) => crate::commands::diff(a),
        Command::Image(a) if a.profiles.len() > 1 => return image_fleet(a),
        Command::Image(a) => crate::commands::image(a),
        Command::Verify(a) => crate::commands::verify(a),
        Command::Cache(a) => crate::commands::cache(a),
        Command::Push(a) => crate::commands::push(a),
        Command::Pull(a) => crate::commands::pull(a),
        Command::VmTest(a) => crate::commands::vm_test(a),
        Command::Report(a) => crate::commands::report(a),
        Command::Run(a) => crate::commands::run(a),
        Command::Completions(a) => {
            clap_complete::generate(
                a.shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "hardroot",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Man => man(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:?}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// `image` with several profiles: the exit code is the worst of the failed
/// profiles' (0 when every profile was built or skipped as a fragment).
fn image_fleet(a: &ImageArgs) -> ExitCode {
    match crate::commands::image_fleet(a) {
        Ok(outcomes) => {
            let worst = outcomes
                .iter()
                .filter_map(|o| match &o.status {
                    crate::image::fleet::Status::Failed(e) => Some(exit_code(e)),
                    _ => None,
                })
                .max();
            worst.map_or(ExitCode::SUCCESS, ExitCode::from)
        }
        Err(e) => {
            eprintln!("{e:?}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Verbs that own no VM, namespace or half-written output: stopping them at
/// any point leaves nothing behind.
fn only_prints(command: &Command) -> bool {
    matches!(
        command,
        Command::Build(_)
            | Command::Check(_)
            | Command::Options(_)
            | Command::Explain(_)
            | Command::Diff(_)
            | Command::Completions(_)
            | Command::Man
    )
}

/// `hardroot options --json | head` should end like any Unix filter when the
/// reader goes away, not panic in println!. Rust ignores SIGPIPE by default;
/// the default action is right for these verbs only (see only_prints): the
/// VM verbs must survive to shut their machines down.
fn die_quietly_on_closed_pipe() {
    // SAFETY: called before any thread is started; restores the default disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// 1 for mistakes in profiles and modules, 4 for a failed VM test, 3 for everything the environment did.
fn exit_code(e: &miette::Report) -> u8 {
    let not_reproduced = matches!(
        e.downcast_ref::<crate::image::ImageError>(),
        Some(crate::image::ImageError::NotReproduced { .. })
    );
    if e.downcast_ref::<Located>().is_some()
        || e.downcast_ref::<Errors>().is_some()
        || not_reproduced
    {
        1
    } else if e.downcast_ref::<crate::vmtest::TestFailed>().is_some() {
        4
    } else {
        3
    }
}

fn man() -> miette::Result<()> {
    let cmd = <Cli as clap::CommandFactory>::command();
    clap_mangen::Man::new(cmd)
        .render(&mut std::io::stdout())
        .map_err(|e| miette::miette!("cannot write the man page: {e}"))
}
