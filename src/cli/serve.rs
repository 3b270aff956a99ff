//! `kiln serve`: the cache-warming service (see `kiln::serve`).

use super::Error;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The service's config (TOML; see README's `kiln serve` section).
    #[arg(long, default_value = "kiln-serve.toml")]
    config: PathBuf,
    /// Check the config and exit (0 when it is valid).
    #[arg(long)]
    check: bool,
}

/// The store root `kiln serve` with `args` uses when `--root` is not
/// given: its config's, if it names one (None: the default).
pub fn store_root(args: &Args) -> Option<PathBuf> {
    kiln::serve::config::Config::load(&args.config)
        .ok()
        .and_then(|c| c.store.root)
}

/// Runs the service until SIGTERM or SIGINT.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let config =
        kiln::serve::config::Config::load(&args.config).map_err(|e| Error::Usage(e.to_string()))?;
    for w in config.warnings() {
        eprintln!("warning: {}: {w}", args.config.display());
    }
    if args.check {
        eprintln!("{}: valid", args.config.display());
        return Ok(ExitCode::SUCCESS);
    }
    let root = root
        .or_else(|| config.store.root.clone())
        .unwrap_or_else(|| kiln::store::Store::default_root(kiln::sandbox::fs::is_root()));
    let runtime = kiln::runtime::get().map_err(Error::Write)?;
    match runtime.block_on(kiln::serve::serve(config, root)) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(Error::Usage(e.to_string())),
    }
}
