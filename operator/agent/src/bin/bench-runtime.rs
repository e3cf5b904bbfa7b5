//! Benchmark: a container created, running, then deleted through berth's runtime (shim + libcontainer,
//! overlayfs rootfs, CRI log, seccomp) against `runc run -d` + `runc delete -f` on the same bundle (the same
//! OCI spec, built by berth, over the same busybox-static rootfs), alternating, in one run. Prints both and
//! the ratio; also the shim's memory. Run as root: `bench-runtime [--iterations N]`.
//!
//! The binary is its own shim (`bench-runtime shim --state-dir DIR`), like `berth shim`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use berth_agent::runtime::{CgroupVersion, ContainerConfig, Runtime, RuntimeConfig, spec};

fn main() -> ExitCode {
    if let Some(code) = berth_agent::runtime::shim::main_if_shim(std::env::args_os()) {
        return code;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let iterations = match args.as_slice() {
        [] => 30,
        [flag, n] if flag == "--iterations" => match n.parse() {
            Ok(n) if n > 0 => n,
            _ => return usage(),
        },
        _ => return usage(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bench-runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(iterations)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-runtime: {err}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: bench-runtime [--iterations N]");
    ExitCode::from(2)
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

async fn bench(iterations: usize) -> Result<()> {
    if Command::new("runc").arg("--version").output().is_err() {
        return Err("runc is missing: run scripts/test-deps.sh (apt-get install runc)".into());
    }
    let work = Scratch(PathBuf::from(format!("/tmp/brb-{}", std::process::id())));
    let rootfs = busybox_rootfs(&work.path().join("rootfs"))?;
    let mut config = RuntimeConfig::new(work.path().join("state"))?;
    config.cgroup_parent = PathBuf::from("/berth-bench");
    let berth = Runtime::new(config)?;
    let version = berth.cgroup_version();

    let container = |id: String| {
        ContainerConfig::new(
            id,
            vec![rootfs.clone()],
            vec!["sleep".into(), "1000".into()],
        )
    };
    // The runc bundle: berth's spec for the same container, over the plain rootfs.
    let bundle = work.path().join("bundle");
    std::fs::create_dir_all(&bundle)?;
    let runc_root = work.path().join("runc");
    let runc_spec = spec::build(
        &container("runc".into()),
        &rootfs,
        Path::new("/berth-bench/runc"),
        version,
    )?;
    runc_spec.save(bundle.join("config.json"))?;

    let mut ours = Vec::with_capacity(iterations);
    let mut theirs = Vec::with_capacity(iterations);
    // One warm-up round each (page cache, binaries), then alternating measured rounds.
    for round in 0..=iterations {
        let id = format!("bench-{round}");
        let started = Instant::now();
        berth.create(container(id.clone())).await?;
        berth.remove(&id).await?;
        let berth_time = started.elapsed();

        let started = Instant::now();
        runc(&runc_root, &["run", "-d", "--bundle", path(&bundle)?, &id])?;
        runc(&runc_root, &["delete", "-f", &id])?;
        let runc_time = started.elapsed();
        if round > 0 {
            ours.push(berth_time);
            theirs.push(runc_time);
        }
    }

    let (ours_median, theirs_median) = (median(&mut ours), median(&mut theirs));
    println!(
        "container create → running → deleted (busybox `sleep`, cgroup {}, {iterations} rounds each, alternating)",
        match version {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        }
    );
    println!(
        "  berth runtime  median {:>7.2} ms   mean {:>7.2} ms",
        ms(ours_median),
        ms(mean(&ours))
    );
    println!(
        "  runc           median {:>7.2} ms   mean {:>7.2} ms",
        ms(theirs_median),
        ms(mean(&theirs))
    );
    println!(
        "  ratio berth/runc (median): {:.2}",
        ours_median.as_secs_f64() / theirs_median.as_secs_f64()
    );
    shim_memory(&berth, &container).await
}

/// How many containers run side by side while their shims' memory is read: PSS shares the binary's pages
/// among the shims as it would among a node's Pods.
const MEMORY_CONTAINERS: usize = 10;

async fn shim_memory(
    berth: &Runtime,
    container: &impl Fn(String) -> ContainerConfig,
) -> Result<()> {
    let ids: Vec<String> = (0..MEMORY_CONTAINERS)
        .map(|i| format!("memory-{i}"))
        .collect();
    let measured = async {
        let mut shims = Vec::new();
        for id in &ids {
            shims.push(berth.create(container(id.clone())).await?.shim_pid);
        }
        // A state query pings each shim: the answer comes from the shim's long-lived phase.
        for id in &ids {
            berth.state(id).await?;
        }
        let memory: Vec<(u64, u64)> = shims.iter().filter_map(|pid| memory_of(*pid)).collect();
        if memory.is_empty() {
            return Err("no shim's memory could be read".into());
        }
        let n = memory.len() as u64;
        Ok::<_, Box<dyn std::error::Error>>((
            memory.len(),
            memory.iter().map(|m| m.0).sum::<u64>() / n,
            memory.iter().map(|m| m.1).sum::<u64>() / n,
        ))
    }
    .await;
    for id in &ids {
        match berth.remove(id).await {
            Ok(()) | Err(berth_agent::runtime::Error::NotFound(_)) => {}
            Err(err) => eprintln!("bench-runtime: removing {id}: {err}"),
        }
    }
    let (shims, rss, pss) = measured?;
    println!("  shim memory, mean of {shims} running side by side: RSS {rss} KiB, PSS {pss} KiB");
    Ok(())
}

/// A scratch directory, removed when the benchmark ends.
struct Scratch(PathBuf);

impl Scratch {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // The (now empty) parent cgroup of the benchmark's containers, in every hierarchy.
        let _ = std::fs::remove_dir("/sys/fs/cgroup/berth-bench");
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            for entry in entries.flatten() {
                let _ = std::fs::remove_dir(entry.path().join("berth-bench"));
            }
        }
    }
}

fn runc(root: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("runc {args:?} failed: {status}").into())
    }
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().ok_or_else(|| "non-UTF-8 path".into())
}

/// A rootfs of busybox-static and its applet links.
fn busybox_rootfs(dir: &Path) -> Result<PathBuf> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        return Err("/bin/busybox is missing: run scripts/test-deps.sh (busybox-static)".into());
    }
    for sub in ["bin", "dev", "proc", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    std::fs::copy(busybox, dir.join("bin/busybox"))?;
    for applet in ["sh", "sleep", "true", "echo"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet))?;
    }
    Ok(dir.to_path_buf())
}

/// (VmRSS, Pss) of a process in KiB.
fn memory_of(pid: i32) -> Option<(u64, u64)> {
    let field = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    Some((field(&status, "VmRSS:")?, field(&rollup, "Pss:")?))
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn mean(samples: &[Duration]) -> Duration {
    samples.iter().sum::<Duration>() / samples.len() as u32
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
