//! VM test driver: QEMU machines, backdoor channel, test networks, vm-tests/* scripts.
#[derive(Debug, clap::Args)]
pub struct VmTestArgs {
    /// Profile of the machine under test
    pub profile: std::path::PathBuf,
    /// Test folder, e.g. vm-tests/xmpp-server
    pub test: std::path::PathBuf,
}

pub fn run(_args: &VmTestArgs) -> miette::Result<()> {
    Err(miette::miette!("`hardroot vm-test` is not implemented yet"))
}

/// A VM test ran and one of its steps failed (exit code 4), as opposed to the driver failing.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("VM test failed: {0}")]
pub struct TestFailed(pub String);
