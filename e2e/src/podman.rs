//! podman, the benchmarks' peer: Debian's podman with runc on a configuration, storage and bridge network of
//! the bench's own (no system file is edited, nothing of another podman is seen), `podman kube play` of Pod
//! YAML, and the memory podman keeps for its pods (it has no daemon: conmons, pause containers, aardvark-dns).

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::bench::{Memory, parent, processes, sum};

/// podman's settings for this machine (no systemd, cgroup v1, Debian's podman), in a file of the bench's own
/// that `CONTAINERS_CONF` points to: podman then reads no other containers.conf, and no system file changes.
/// Debian's default ulimits are refused in this kind of VM; runc, as berth's runtime comparison uses. Network
/// definitions go to the bench's directory rather than /etc/containers/networks.
fn containers_conf(network_dir: &Path) -> String {
    format!(
        "[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = \"cgroupfs\"\nruntime = \"runc\"\n\
         events_logger = \"file\"\n\n[network]\nnetwork_backend = \"netavark\"\nnetwork_config_dir = {:?}\n",
        network_dir.display().to_string()
    )
}

/// podman with its own configuration, storage, run and temporary directories and its own bridge network, so
/// that it sees only this bench's pods, images, volumes and network. On drop it removes them and unmounts
/// whatever is left.
pub struct Podman {
    dir: tempfile::TempDir,
    pub network: String,
}

/// What podman keeps in memory for its pods.
#[derive(Clone, Copy)]
pub struct PodmanMemory {
    pub conmon: Memory,
    /// The pause containers podman adds to each pod (berth's Pods have none).
    pub infra: Memory,
    /// aardvark-dns, which serves the network's names.
    pub dns: Memory,
}

impl PodmanMemory {
    pub fn total(&self) -> Memory {
        sum(&[self.conmon, self.infra, self.dns])
    }
}

impl Podman {
    /// A podman of the bench's own with a bridge network `berth-bench-<run>` on `cidr`.
    pub fn new(run: &str, cidr: &str) -> Result<Podman> {
        let dir = tempfile::Builder::new()
            .prefix("berth-bench-podman-")
            .tempdir()?;
        std::fs::write(
            dir.path().join("containers.conf"),
            containers_conf(&dir.path().join("networks")),
        )?;
        let podman = Podman {
            dir,
            network: format!("berth-bench-{run}"),
        };
        podman.run(&["network", "create", "--subnet", cidr, &podman.network])?;
        Ok(podman)
    }

    fn command(&self) -> Command {
        let dir = self.dir.path();
        let mut command = Command::new("podman");
        command
            .env("CONTAINERS_CONF", dir.join("containers.conf"))
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--runroot")
            .arg(dir.join("run"))
            .arg("--tmpdir")
            .arg(dir.join("tmp"))
            .args(["--storage-driver", "overlay"]);
        command
    }

    /// Runs `podman <args>` and returns its stdout; an error carries its stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let output = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running podman")?;
        ensure!(
            output.status.success(),
            "podman {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Whether `podman <args>` succeeds (an exec'ed probe, say), its output discarded.
    pub fn succeeds(&self, args: &[&str]) -> bool {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `podman pull --tls-verify=false <image>` (the benches' registries are plain HTTP on loopback).
    pub fn pull(&self, image: &str) -> Result<()> {
        self.run(&["pull", "--quiet", "--tls-verify=false", image])
            .with_context(|| format!("pulling {image}"))?;
        Ok(())
    }

    /// `podman kube play` of a file of Pods (written to the podman directory as `file`), on the bench's
    /// network.
    pub fn play(&self, yaml: &str, file: &str) -> Result<()> {
        let path = self.dir.path().join(file);
        std::fs::write(&path, yaml)?;
        let path = path.to_string_lossy();
        self.run(&[
            "kube",
            "play",
            "--network",
            &self.network,
            "--tls-verify=false",
            &path,
        ])?;
        Ok(())
    }

    /// Names of the pods podman reports Running.
    pub fn running_pods(&self) -> Result<HashSet<String>> {
        Ok(self
            .run(&["pod", "ps", "--format", "{{.Name}} {{.Status}}"])?
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, status)| *status == "Running")
            .map(|(name, _)| name.to_owned())
            .collect())
    }

    /// Polls `podman pod ps` until every named pod is Running; returns when it first saw them so.
    pub fn wait_running(&self, names: &[String], deadline: Duration) -> Result<Instant> {
        let start = Instant::now();
        loop {
            let running = self.running_pods()?;
            if names.iter().all(|n| running.contains(n)) {
                return Ok(Instant::now());
            }
            ensure!(
                start.elapsed() < deadline,
                "podman pods not Running within {deadline:?}: {:?}",
                names
                    .iter()
                    .filter(|n| !running.contains(*n))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Removes every pod (stopping containers with `stop_seconds` of grace) and every volume.
    pub fn remove_all(&self, stop_seconds: u32) -> Result<()> {
        self.run(&[
            "pod",
            "rm",
            "--all",
            "--force",
            "--time",
            &stop_seconds.to_string(),
        ])?;
        self.run(&["volume", "rm", "--all", "--force"])?;
        Ok(())
    }

    /// podman's conmon processes for this podman's containers, the pause (infra) containers they watch, and the
    /// network's DNS server. The workloads themselves are not counted.
    pub fn memory(&self) -> PodmanMemory {
        let dir = self.dir.path().to_string_lossy().into_owned();
        let all = processes();
        let conmons: Vec<u32> = all
            .iter()
            .filter(|(_, argv)| {
                argv.first().is_some_and(|a| a.ends_with("conmon"))
                    && argv.iter().any(|a| a.contains(dir.as_str()))
            })
            .map(|(pid, _)| *pid)
            .collect();
        let mut conmon = Memory::default();
        let mut infra = Memory::default();
        let mut dns = Memory::default();
        for &pid in &conmons {
            conmon.add(pid);
        }
        for (pid, argv) in &all {
            // netavark keeps aardvark-dns's configuration under /run/containers/networks whatever podman's
            // directories; one file per network it serves.
            let serves_ours = argv
                .windows(2)
                .find(|w| w[0] == "--config")
                .is_some_and(|w| Path::new(&w[1]).join(&self.network).exists());
            if argv.first().is_some_and(|a| a.ends_with("aardvark-dns")) && serves_ours {
                dns.add(*pid);
            }
            let child_of_conmon = parent(*pid).is_some_and(|p| conmons.contains(&p));
            let is_pause = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "catatonit");
            if child_of_conmon && is_pause {
                infra.add(*pid);
            }
        }
        PodmanMemory { conmon, infra, dns }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        if let Err(e) = self.run(&["pod", "rm", "--all", "--force", "--time", "0"]) {
            eprintln!("removing podman's pods: {e:#}");
        }
        if let Err(e) = self.run(&["volume", "rm", "--all", "--force"]) {
            eprintln!("removing podman's volumes: {e:#}");
        }
        if let Err(e) = self.run(&["network", "rm", "--force", &self.network]) {
            eprintln!("removing podman's network: {e:#}");
        }
        if let Err(e) = self.run(&["rmi", "--all", "--force"]) {
            eprintln!("removing podman's images: {e:#}");
        }
        // Anything still mounted under the directory would stop its removal.
        let dir = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(dir.as_str()))
            .collect();
        points.sort_unstable_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = Command::new("umount").args(["-l", point]).status();
        }
    }
}

/// Debian's podman (with runc), installed with apt when missing.
pub fn ensure_podman() -> Result<()> {
    crate::bench::ensure_tool("podman", "podman")
}

pub fn podman_version() -> Result<String> {
    let output = Command::new("podman").arg("--version").output()?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
