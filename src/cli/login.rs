//! `kiln login` and `kiln logout`: credentials in docker's config.json,
//! so docker, skopeo and kiln share them.

use super::{Error, runtime};
use kiln::registry::{Client, Credentials, DockerConfig, Options};
use std::io::{Read, Write};
use std::process::ExitCode;

/// Arguments of `kiln login`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry (`host[:port]`) [default: docker.io].
    registry: Option<String>,
    /// The user name.
    #[arg(short = 'u', long)]
    username: String,
    /// The password (visible to other users in the process list: prefer
    /// --password-stdin).
    #[arg(short = 'p', long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// A registry that may be reached over plain HTTP (repeatable).
    #[arg(long = "insecure-registry")]
    insecure: Vec<String>,
}

/// Arguments of `kiln logout`.
#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// The registry [default: docker.io].
    registry: Option<String>,
}

fn registry_name(given: Option<&str>) -> String {
    match given {
        None | Some("docker.io" | "index.docker.io" | "registry-1.docker.io") => {
            kiln::registry::reference::DOCKER_HUB.to_string()
        }
        Some(r) => r
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string(),
    }
}

/// Checks the credentials with the registry, then keeps them.
pub fn run(args: Args) -> Result<ExitCode, Error> {
    let registry = registry_name(args.registry.as_deref());
    let secret = match (&args.password, args.password_stdin) {
        (Some(p), _) => p.clone(),
        (None, true) => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(Error::Write)?;
            text.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => {
            return Err(Error::Usage(
                "give the password with --password-stdin (or -p)".into(),
            ));
        }
    };
    let creds = Credentials {
        username: args.username.clone(),
        secret,
    };
    let mut opts = Options::from_env();
    opts.insecure.extend(args.insecure.iter().cloned());
    runtime()?.block_on(async {
        let client = Client::connect(&registry, &opts, Some(creds.clone())).await?;
        client.check_login().await
    })?;
    let mut config = DockerConfig::load(&opts.docker_config)?;
    config.store(&registry, &creds)?;
    writeln!(std::io::stdout(), "Login Succeeded")?;
    Ok(ExitCode::SUCCESS)
}

/// Forgets the registry's credentials.
pub fn logout(args: LogoutArgs) -> Result<ExitCode, Error> {
    let registry = registry_name(args.registry.as_deref());
    let opts = Options::from_env();
    let mut config = DockerConfig::load(&opts.docker_config)?;
    if config.erase(&registry)? {
        writeln!(
            std::io::stdout(),
            "Removing login credentials for {registry}"
        )?;
    } else {
        writeln!(std::io::stdout(), "Not logged in to {registry}")?;
    }
    Ok(ExitCode::SUCCESS)
}
