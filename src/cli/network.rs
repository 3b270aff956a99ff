//! `kiln network`: create, list, inspect, remove and prune container
//! networks; connect and disconnect containers.

use super::format::table;
use super::{Error, open_store};
use kiln::network::{self, Network};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln network`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Make a network: a bridge, a subnet, names resolved by its containers.
    Create {
        /// Its name.
        name: String,
        /// Its subnet (default: the first free 10.89.N.0/24); given again
        /// with an IPv6 subnet for --ipv6.
        #[arg(long)]
        subnet: Vec<String>,
        /// The bridge's address (default: the subnet's first); an IPv6
        /// one for the IPv6 subnet.
        #[arg(long)]
        gateway: Vec<String>,
        /// Containers' addresses come from this range of the subnet.
        #[arg(long = "ip-range")]
        ip_range: Vec<String>,
        /// `NAME=IP`: an address of the subnet never given to a container.
        #[arg(long = "aux-address")]
        aux_address: Vec<String>,
        /// Containers get IPv6 addresses from the IPv6 --subnet too.
        #[arg(long)]
        ipv6: bool,
        /// No way out: no gateway, no route, no names but its own.
        #[arg(long)]
        internal: bool,
        /// Masquerade what leaves the network (nftables; turns IPv4
        /// forwarding on). Without it, containers reach the host and
        /// each other, and nothing beyond.
        #[arg(long)]
        nat: bool,
        /// Only `bridge`.
        #[arg(short = 'd', long, default_value = "bridge", value_parser = ["bridge"])]
        driver: String,
        /// A label `KEY=VALUE`.
        #[arg(long)]
        label: Vec<String>,
    },
    /// List networks.
    #[command(visible_alias = "list")]
    Ls {
        /// Only ids.
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Whole ids.
        #[arg(long = "no-trunc")]
        no_trunc: bool,
    },
    /// Show networks as JSON, as docker's inspect does.
    Inspect {
        /// Names or ids.
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove networks no running container uses.
    #[command(visible_alias = "remove")]
    Rm {
        /// Names or ids.
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove every network no running container uses, and what killed
    /// kilns left of theirs.
    Prune {
        /// Do not ask (kiln never asks).
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Connect a container to a network.
    Connect {
        /// A name other containers on the network resolve to it.
        #[arg(long)]
        alias: Vec<String>,
        /// `NAME[:ALIAS]`: ALIAS resolves to container NAME on this
        /// network, for this container only.
        #[arg(long)]
        link: Vec<String>,
        /// Its IPv4 address there.
        #[arg(long)]
        ip: Option<std::net::Ipv4Addr>,
        /// The network.
        network: String,
        /// The container.
        container: String,
    },
    /// Disconnect a container from a network.
    Disconnect {
        /// Also when it is not connected (kiln ignores it).
        #[arg(short = 'f', long)]
        force: bool,
        /// The network.
        network: String,
        /// The container.
        container: String,
    },
}

fn network_error(e: network::NetworkError) -> Error {
    Error::Run(1, format!("Error response from kiln: {e}"))
}

/// `kiln network ...`.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let root = store.root();
    let mut out = String::new();
    let mut failed = false;
    match args.command {
        Command::Create {
            name,
            subnet,
            gateway,
            internal,
            nat,
            label,
            ip_range,
            aux_address,
            ipv6,
            ..
        } => {
            let (v6, v4): (Vec<String>, Vec<String>) =
                subnet.into_iter().partition(|s| s.contains(':'));
            let (g6, g4): (Vec<String>, Vec<String>) =
                gateway.into_iter().partition(|s| s.contains(':'));
            let (r6, r4): (Vec<String>, Vec<String>) =
                ip_range.into_iter().partition(|s| s.contains(':'));
            if [&v4, &v6, &g4, &g6, &r4, &r6].iter().any(|l| l.len() > 1) {
                return Err(Error::Usage(
                    "--subnet, --gateway and --ip-range: one IPv4 and one IPv6 each at most".into(),
                ));
            }
            let aux = aux_address
                .iter()
                .map(|a| {
                    a.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or_else(|| Error::Usage(format!("--aux-address {a:?}: use NAME=IP")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let labels = label
                .iter()
                .map(|l| match l.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (l.clone(), String::new()),
                })
                .collect();
            let n = network::create(
                root,
                &network::Create {
                    name,
                    subnet: v4.into_iter().next(),
                    gateway: g4.into_iter().next(),
                    ip_range: r4.into_iter().next(),
                    aux,
                    internal,
                    nat,
                    labels,
                    enable_ipv6: ipv6,
                    subnet6: v6.into_iter().next(),
                    gateway6: g6.into_iter().next(),
                    ip_range6: r6.into_iter().next(),
                },
            )
            .map_err(network_error)?;
            out = format!("{}\n", n.id);
        }
        Command::Ls { quiet, no_trunc } => {
            let all = network::list(root).map_err(network_error)?;
            let id = |n: &Network| match no_trunc {
                true => n.id.clone(),
                false => n.id[..12].to_string(),
            };
            if quiet {
                for n in &all {
                    out.push_str(&id(n));
                    out.push('\n');
                }
            } else {
                let mut rows = vec![
                    ["NETWORK ID", "NAME", "DRIVER", "SCOPE"]
                        .map(String::from)
                        .to_vec(),
                ];
                for n in &all {
                    rows.push(vec![id(n), n.name.clone(), "bridge".into(), "local".into()]);
                }
                out = table(&rows);
            }
        }
        Command::Inspect { networks } => {
            let mut found = Vec::new();
            for what in &networks {
                match network::find(root, what) {
                    Ok(n) => found.push(n.docker_json(root)),
                    Err(e) => {
                        failed = true;
                        eprintln!("Error: {e}");
                    }
                }
            }
            out = serde_json::to_string_pretty(&found).map_err(std::io::Error::other)? + "\n";
        }
        Command::Rm { networks } => {
            for what in &networks {
                match network::find(root, what).and_then(|n| network::remove(root, &n)) {
                    Ok(()) => {
                        out.push_str(what);
                        out.push('\n');
                    }
                    Err(e) => {
                        failed = true;
                        eprintln!("Error response from kiln: {e}");
                    }
                }
            }
        }
        Command::Prune { .. } => {
            let removed = network::prune(root).map_err(network_error)?;
            if !removed.is_empty() {
                out.push_str("Deleted Networks:\n");
                for n in removed {
                    out.push_str(&n);
                    out.push('\n');
                }
            }
        }
        Command::Connect {
            alias,
            link,
            ip,
            network,
            container,
        } => {
            let mut c =
                kiln::container::find(&store, &container).map_err(super::container_error)?;
            let a = network::Attachment {
                network,
                aliases: alias,
                ip,
                links: link,
                ..Default::default()
            };
            kiln::container::networks::connect(&mut c, a).map_err(super::container_error)?;
        }
        Command::Disconnect {
            force,
            network,
            container,
        } => {
            let mut c =
                kiln::container::find(&store, &container).map_err(super::container_error)?;
            if let Err(e) = kiln::container::networks::disconnect(&mut c, &network)
                && !force
            {
                return Err(super::container_error(e));
            }
        }
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
