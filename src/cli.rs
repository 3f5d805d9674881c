//! Command line: verbs and their dispatch. Each verb's work lives in its layer;
//! this file only parses arguments and prints.
use crate::diag::{Errors, Located};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
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
                  hardroot check profiles/xmpp-server.toml          evaluate and run every assertion\n  \
                  hardroot build profiles/xmpp-server.toml -o out   write the overlay; prints its root hash\n  \
                  hardroot explain profiles/xmpp-server.toml ssh.port\n  \
                  hardroot image profiles/xmpp-server.toml -o img   Debian base (cached) + overlay → ext4 image\n  \
                  hardroot image profiles/minimal.toml profiles/xmpp-server.toml -o fleet --jobs 2\n  \
                                                    several profiles: OUT/<profile>/ each (docs/fleet.md)\n  \
                  hardroot vm-test profiles/xmpp-test.toml vm-tests/xmpp-server\n  \
                  hardroot run profiles/xmpp-server.toml            boot it here, like `mkosi qemu`\n\n\
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
    Image(crate::image::ImageArgs),
    /// Rebuild an image cold from its image-manifest.json and compare byte for byte
    Verify(crate::image::verify::VerifyArgs),
    /// List or prune the cache of Debian bases that `image` builds from
    Cache(crate::image::gc::CacheArgs),
    /// Publish an image folder to an OCI registry as one artifact; prints its digest
    Push(PushArgs),
    /// Fetch an image a `push` published; every file is checked against the manifest before it is written
    Pull(PullArgs),
    /// Boot the image in QEMU and run a test from vm-tests/
    VmTest(crate::vmtest::VmTestArgs),
    /// Write the acceptance report (one self-contained HTML page) of a finished VM test
    Report(crate::report::ReportArgs),
    /// Build a profile's image and boot it in QEMU, like `mkosi qemu`: console here, SSH on 127.0.0.1
    Run(crate::run::RunArgs),
    /// Print shell completions: hardroot completions bash > /etc/bash_completion.d/hardroot
    Completions(CompletionsArgs),
    /// Print the man page (roff): hardroot man > hardroot.1
    Man,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args, Clone)]
pub struct ModuleDirs {
    /// Extra folder of modules, searched before modules/ beside the profile (repeatable)
    #[arg(long = "modules", value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The profile, e.g. profiles/xmpp-server.toml
    pub profile: PathBuf,
    /// Output folder (replaced atomically; a failed build leaves it as it was)
    #[arg(short, long, default_value = "out", value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub modules: ModuleDirs,
    /// Print a JSON summary on stdout instead of text (shape: docs/json.md)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The profile, e.g. profiles/xmpp-server.toml
    pub profile: PathBuf,
    #[command(flatten)]
    pub modules: ModuleDirs,
    /// Print the result as JSON on stdout (shape: docs/json.md)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct OptionsArgs {
    /// Folders of modules to document [default: ./modules]
    #[arg(long = "modules", value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// The reference as JSON on stdout (shape: docs/json.md)
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// The manual as Markdown (docs/options.md is generated with this)
    #[arg(long)]
    pub markdown: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The profile, e.g. profiles/xmpp-server.toml
    pub profile: PathBuf,
    /// An option (`ssh.port`) or a path in the image (`/etc/iptables/rules.v4`)
    #[arg(value_name = "OPTION|PATH")]
    pub what: String,
    #[command(flatten)]
    pub modules: ModuleDirs,
    /// Print the explanation as JSON on stdout (shape: docs/json.md)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older build output folder
    pub a: PathBuf,
    /// The newer build output folder
    pub b: PathBuf,
    /// Print the differences as JSON on stdout (shape: docs/json.md)
    #[arg(long)]
    pub json: bool,
}

/// Registry credentials are never flags: HARDROOT_REGISTRY_USERNAME and
/// HARDROOT_REGISTRY_PASSWORD, or HARDROOT_REGISTRY_AUTH_FILE (a docker
/// config.json), or docker's own config.
const REGISTRY_AUTH_HELP: &str = "Credentials: HARDROOT_REGISTRY_USERNAME + HARDROOT_REGISTRY_PASSWORD, or \
    HARDROOT_REGISTRY_AUTH_FILE (a docker config.json), or $DOCKER_CONFIG/config.json \
    (~/.docker/config.json); never a flag. Registries on 127.0.0.0/8, ::1 and localhost are \
    spoken to over HTTP, all others over HTTPS.";

#[derive(Debug, Args)]
#[command(after_help = REGISTRY_AUTH_HELP)]
pub struct PushArgs {
    /// An image folder `hardroot image` wrote (with image-manifest.json)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Where to: HOST[:PORT]/REPOSITORY:TAG, e.g. registry.example.org/fleet/web:1
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Publish this acceptance report (the HTML `hardroot report` wrote) with the image
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Only print errors and the digest
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the result as JSON on stdout (shape: docs/json.md)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = REGISTRY_AUTH_HELP)]
pub struct PullArgs {
    /// What to fetch: HOST[:PORT]/REPOSITORY:TAG or …@sha256:DIGEST
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Folder to write the files into (made if missing; files are renamed into place when all are verified)
    #[arg(short, long, default_value = "out", value_name = "DIR")]
    pub out: PathBuf,
    /// Only print errors and the digest
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the result as JSON on stdout (shape: docs/json.md)
    #[arg(long)]
    pub json: bool,
}

fn push(a: &PushArgs) -> miette::Result<()> {
    let pushed = crate::oci::push::push(&crate::oci::push::PushRequest {
        dir: a.dir.clone(),
        reference: a.reference.clone(),
        report: a.report.clone(),
        quiet: a.quiet,
    })?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&pushed).unwrap_or_default()
        );
    } else {
        if !a.quiet {
            for f in &pushed.files {
                let how = if f.uploaded {
                    "uploaded"
                } else {
                    "already there"
                };
                eprintln!("    {:20} {:>12} bytes  {how}", f.name, f.size);
            }
        }
        println!("{}@{}", pushed.reference, pushed.digest);
    }
    Ok(())
}

fn pull(a: &PullArgs) -> miette::Result<()> {
    let pulled = crate::oci::pull::pull(&crate::oci::pull::PullRequest {
        reference: a.reference.clone(),
        dir: a.out.clone(),
        quiet: a.quiet,
    })?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&pulled).unwrap_or_default()
        );
    } else {
        if !a.quiet {
            for f in &pulled.files {
                eprintln!("    {:20} {:>12} bytes  verified", f.name, f.size);
            }
        }
        println!("{}@{}", pulled.reference, pulled.digest);
    }
    Ok(())
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
        Command::Image(a) => crate::image::run(a),
        Command::Verify(a) => crate::image::verify::run(a),
        Command::Cache(a) => crate::image::gc::run(a),
        Command::Push(a) => push(a),
        Command::Pull(a) => pull(a),
        Command::VmTest(a) => crate::vmtest::run(a),
        Command::Report(a) => crate::report::run(a),
        Command::Run(a) => crate::run::run(a),
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
fn image_fleet(a: &crate::image::ImageArgs) -> ExitCode {
    match crate::image::run_fleet(a) {
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
