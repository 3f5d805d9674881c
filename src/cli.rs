//! Command line: verbs and their dispatch. Each verb lives in its layer.
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "hardroot", version, about = "Declarative, reproducible, VM-tested server images")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a profile into a disk image (overlay + cached Debian base)
    Image(crate::image::ImageArgs),
    /// Boot the image in QEMU and run a test from vm-tests/
    VmTest(crate::vmtest::VmTestArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Image(a) => crate::image::run(a),
        Command::VmTest(a) => crate::vmtest::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:?}");
            ExitCode::from(1)
        }
    }
}
