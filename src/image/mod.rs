//! Image stage: mmdebstrap base (cached) + overlay → ext4 / qcow2 / GPT.
#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// Profile to build, e.g. profiles/xmpp-server.toml
    pub profile: std::path::PathBuf,
    /// Output folder
    #[arg(short, long, default_value = "out")]
    pub out: std::path::PathBuf,
}

pub fn run(_args: &ImageArgs) -> miette::Result<()> {
    Err(miette::miette!("`hardroot image` is not implemented yet"))
}
