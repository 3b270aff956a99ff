//! Outbound NAT for networks made with `--nat`: one nftables table of
//! kiln's own (`ip kiln`), one masquerade rule per network tagged with its
//! id, and IPv4 forwarding on. Nothing kiln did not create is touched: its
//! rules are found and deleted by their tag, the table only when empty.
//! Through the `nft` command: nftables' own front end, where the rules'
//! syntax is defined (no Rust crate speaks nftables' netlink without
//! libnftnl).

use super::Network;
use std::io::Write;
use std::process::{Command, Stdio};

fn tag(net: &Network) -> String {
    format!("kiln:{}", &net.id[..12])
}

fn nft(script: &str) -> Result<String, String> {
    let mut child = Command::new("nft")
        .args(["-a", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running nft (nftables' command, needed by --nat): {e}"))?;
    child
        .stdin
        .take()
        .ok_or("nft's input")?
        .write_all(script.as_bytes())
        .map_err(|e| format!("writing to nft: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("running nft: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "nft refused kiln's rules: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The handles of this network's rules in kiln's table.
fn handles(net: &Network) -> Result<Vec<String>, String> {
    let listing = nft("list table ip kiln\n").unwrap_or_default();
    let tag = format!("comment \"{}\"", tag(net));
    Ok(listing
        .lines()
        .filter(|l| l.contains(&tag))
        .filter_map(|l| {
            l.rsplit_once("# handle ")
                .map(|(_, h)| h.trim().to_string())
        })
        .collect())
}

/// True when `nft` can be run (checked when a `--nat` network is made).
pub fn available() -> bool {
    Command::new("nft")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Masquerades what leaves `net`'s subnet by another interface than its
/// bridge; turns IPv4 forwarding on. Idempotent.
pub fn enable(net: &Network) -> Result<(), String> {
    if !handles(net)?.is_empty() {
        return Ok(());
    }
    let script = format!(
        "table ip kiln {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n  }}\n}}\nadd rule ip kiln postrouting ip saddr {} oifname != \"{}\" masquerade comment \"{}\"\n",
        net.subnet,
        net.bridge,
        tag(net)
    );
    nft(&script)?;
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(|e| format!("turning IPv4 forwarding on: {e}"))
}

/// Deletes `net`'s rules, and kiln's table when no rule is left in it.
pub fn disable(net: &Network) -> Result<(), String> {
    for h in handles(net)? {
        nft(&format!("delete rule ip kiln postrouting handle {h}\n"))?;
    }
    let listing = nft("list table ip kiln\n").unwrap_or_default();
    if !listing.contains("comment \"kiln:") && listing.contains("table ip kiln") {
        nft("delete table ip kiln\n")?;
    }
    Ok(())
}
