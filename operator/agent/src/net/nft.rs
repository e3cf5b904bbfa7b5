//! The masquerade rule for Pod egress, in an nftables table of the bridge's own, applied with the `nft`
//! binary in one atomic transaction (a ruleset script on stdin): re-applying replaces the table, so setup is
//! idempotent and never duplicates a rule.

use std::io::Write;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

use super::Error;

/// Replaces the table with one masquerading what leaves the Pod CIDR for anywhere but the bridge.
pub(super) fn apply(table: &str, bridge: &str, cidr: Ipv4Net) -> Result<(), Error> {
    let script = format!(
        "add table ip {table}\n\
         delete table ip {table}\n\
         table ip {table} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {cidr} ip daddr != {cidr} oifname != \"{bridge}\" masquerade\n\
         \t}}\n\
         }}\n"
    );
    run(
        &["-f", "-"],
        Some(&script),
        &format!("creating table ip {table}"),
    )
}

/// Deletes the table; a missing one is fine.
pub(super) fn delete(table: &str) -> Result<(), Error> {
    let script = format!("add table ip {table}\ndelete table ip {table}\n");
    run(
        &["-f", "-"],
        Some(&script),
        &format!("deleting table ip {table}"),
    )
}

fn not_installed(err: std::io::Error, what: &str) -> Error {
    if err.kind() == std::io::ErrorKind::NotFound {
        Error::Nft {
            what: what.to_owned(),
            stderr: "the nft binary is missing: install nftables (make installs it)".to_owned(),
        }
    } else {
        Error::io(format!("running nft while {what}"))(err)
    }
}

fn run(args: &[&str], stdin: Option<&str>, what: &str) -> Result<(), Error> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| not_installed(e, what))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(Error::io(format!("writing nft's script while {what}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(Error::io(format!("waiting for nft while {what}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Nft {
            what: what.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}
