//! A network's rules, in one nftables table of kiln's own (`ip kiln`),
//! each tagged with the network's id: outbound NAT for networks made with
//! `--nat` (a masquerade rule, and IPv4 forwarding on), and for every
//! network, isolation (what comes from its bridge is not routed elsewhere
//! unless it masquerades; nothing from elsewhere opens connections into
//! it; a `--nat` network's traffic leaves with its own subnet's sources
//! only). In kiln's namespace as root, in the per-user one (run by the
//! helper, out through pasta) rootless. Nothing kiln did not create is
//! touched: its rules are found and deleted by their tag, the table only
//! when empty. Without `nft` installed, a network has no such rules.
//! Through the `nft` command: nftables' own front end, where the rules'
//! syntax is defined (no Rust crate speaks nftables' netlink without
//! libnftnl).

use super::{Network, NetworkError};
use std::io::Write;
use std::process::{Command, Stdio};

fn tag(net: &Network) -> String {
    format!("kiln:{}", &net.id[..12])
}

fn nft(script: &str) -> Result<String, NetworkError> {
    let failed = |what| move |source| NetworkError::Nft { what, source };
    let mut child = Command::new("nft")
        .args(["-a", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(failed("running nft (nftables' command)"))?;
    child
        .stdin
        .take()
        .ok_or_else(|| failed("writing to nft")(std::io::ErrorKind::BrokenPipe.into()))?
        .write_all(script.as_bytes())
        .map_err(failed("writing to nft"))?;
    let out = child.wait_with_output().map_err(failed("running nft"))?;
    if !out.status.success() {
        return Err(NetworkError::NftRefused(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// This network's rules in kiln's table, as (chain, handle).
fn handles(net: &Network) -> Result<Vec<(String, String)>, NetworkError> {
    let listing = nft("list table ip kiln\n").unwrap_or_default();
    let tag = format!("comment \"{}\"", tag(net));
    let mut chain = String::new();
    let mut found = Vec::new();
    for l in listing.lines() {
        if let Some(rest) = l.trim().strip_prefix("chain ") {
            chain = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        } else if l.contains(&tag)
            && let Some((_, h)) = l.rsplit_once("# handle ")
        {
            found.push((chain.clone(), h.trim().to_string()));
        }
    }
    Ok(found)
}

/// True when `nft` can be run (asked once per process).
pub fn available() -> bool {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        Command::new("nft")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Puts `net`'s rules in place (idempotent): isolation for every
/// network, masquerading for `--nat` ones (with IPv4 forwarding on).
/// Bridged traffic between the network's own containers is not routed,
/// so it is not touched; neither is traffic to or from this host.
pub fn apply(net: &Network) -> Result<(), NetworkError> {
    if !handles(net)?.is_empty() {
        return Ok(());
    }
    let (b, t) = (&net.bridge, tag(net));
    let mut script = format!(
        "table ip kiln {{\n  chain forward {{\n    type filter hook forward priority filter; policy accept;\n  }}\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n  }}\n}}\nadd rule ip kiln forward oifname \"{b}\" iifname != \"{b}\" ct state new drop comment \"{t}\"\n"
    );
    if net.nat {
        script.push_str(&format!(
            "add rule ip kiln forward iifname \"{b}\" ip saddr != {s} drop comment \"{t}\"\nadd rule ip kiln postrouting ip saddr {s} oifname != \"{b}\" masquerade comment \"{t}\"\n",
            s = net.subnet
        ));
    } else {
        script.push_str(&format!(
            "add rule ip kiln forward iifname \"{b}\" oifname != \"{b}\" drop comment \"{t}\"\n"
        ));
    }
    nft(&script)?;
    if net.nat {
        let forward = std::path::Path::new("/proc/sys/net/ipv4/ip_forward");
        std::fs::write(forward, "1")
            .map_err(super::io_err("turning IPv4 forwarding on in", forward))?;
    }
    Ok(())
}

/// Deletes `net`'s rules, and kiln's table when no rule is left in it.
pub fn disable(net: &Network) -> Result<(), NetworkError> {
    for (chain, h) in handles(net)? {
        nft(&format!("delete rule ip kiln {chain} handle {h}\n"))?;
    }
    let listing = nft("list table ip kiln\n").unwrap_or_default();
    if !listing.contains("comment \"kiln:") && listing.contains("table ip kiln") {
        nft("delete table ip kiln\n")?;
    }
    Ok(())
}
