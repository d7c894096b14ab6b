//! Placeholder.
#[derive(Debug, clap::Args)]
pub struct Args {}
pub fn write(_args: &Args) -> anyhow::Result<()> { Ok(()) }
