//! What the benchmark commands share: `berth up` on a network of its own, the memory of a set of processes
//! (RSS and PSS from /proc), percentiles, the machine's load, and a Pod's process and network namespace.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec};
use kube::Api;
use kube::api::ObjectMeta;

use crate::Server;
use crate::network::TestNetwork;

/// How long one Pod may take to run, or to go away, before a bench gives up.
pub const POD_DEADLINE: Duration = Duration::from_secs(120);
/// How long the node may take to register and turn Ready.
pub const NODE_DEADLINE: Duration = Duration::from_secs(120);

/// Summed resident and proportional set sizes of a set of processes.
#[derive(Clone, Copy, Default)]
pub struct Memory {
    pub processes: usize,
    pub rss_kib: u64,
    pub pss_kib: u64,
}

impl Memory {
    pub fn add(&mut self, pid: u32) {
        if let Some((rss, pss)) = process_memory(pid) {
            self.processes += 1;
            self.rss_kib += rss;
            self.pss_kib += pss;
        }
    }

    pub fn mib(kib: u64) -> f64 {
        kib as f64 / 1024.0
    }

    pub fn per_pod_kib(&self, idle: &Memory, pods: usize) -> (f64, f64) {
        let pods = pods as f64;
        (
            (self.rss_kib as f64 - idle.rss_kib as f64) / pods,
            (self.pss_kib as f64 - idle.pss_kib as f64) / pods,
        )
    }
}

/// Where a process's memory is, from /proc/<pid>/smaps: one line per mapped file (or `[anon]`, `[heap]`,
/// `[stack]`) and kind of mapping (`r-xp` text, `r--p` read-only data, `rw-p` data), the largest RSS first,
/// with the RSS, PSS and private dirty KiB. Private dirty pages are the process's own; clean file pages are
/// shared with every process that maps the same file.
pub fn print_breakdown(what: &str, pid: u32) {
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        println!("- {what}: process {pid} is gone");
        return;
    };
    let mut rows: std::collections::BTreeMap<String, [u64; 3]> = Default::default();
    let mut key = String::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            let perms = fields.next().unwrap_or_default();
            let name = fields.nth(3).unwrap_or("[anon]");
            key = format!("{name} {perms}");
            continue;
        }
        let column = match first {
            "Rss:" => 0,
            "Pss:" => 1,
            "Private_Dirty:" => 2,
            _ => continue,
        };
        let kib = fields
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        rows.entry(key.clone()).or_default()[column] += kib;
    }
    let mut rows: Vec<_> = rows.into_iter().filter(|(_, v)| v[0] > 0).collect();
    rows.sort_by(|a, b| b.1[0].cmp(&a.1[0]));
    println!("- {what} (process {pid}), KiB: RSS / PSS / private dirty");
    for (name, [rss, pss, dirty]) in rows.iter().take(10) {
        println!("  {rss:>8} {pss:>8} {dirty:>8}  {name}");
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A `berth up` with its own data directory and node name; on drop it is killed and `berth down` removes
/// every container it left, before the data directory goes.
pub struct BerthUp {
    pub server: Server,
    pub bin: PathBuf,
    /// Its bridge and Pod CIDR; the bridge's address is the Pods' gateway and DNS server.
    pub network: TestNetwork,
}

impl BerthUp {
    /// Starts `bin up --node-name <node>` with a bridge and /24 of its own and the extra flags.
    pub fn start(bin: &Path, node: &str, extra: &[&str]) -> BerthUp {
        let network = TestNetwork::pick();
        println!(
            "- berth: bridge {}, Pod CIDR {}",
            network.bridge, network.cidr
        );
        let mut command = vec!["up", "--node-name", node];
        let flags = network.flags();
        command.extend(flags.iter().map(String::as_str));
        command.extend(extra);
        BerthUp {
            server: Server::start_command(bin.to_owned(), &command),
            bin: bin.to_owned(),
            network,
        }
    }
}

impl Drop for BerthUp {
    fn drop(&mut self) {
        self.server.kill();
        let down = Command::new(&self.bin)
            .arg("down")
            .arg("--data-dir")
            .arg(self.server.data_dir.path())
            .stdout(Stdio::null())
            .status();
        if !down.is_ok_and(|s| s.success()) {
            eprintln!(
                "berth down --data-dir {} failed: containers may be left",
                self.server.data_dir.path().display()
            );
        }
    }
}

pub async fn wait_node_ready(nodes: &Api<Node>, name: &str) -> Result<()> {
    let start = Instant::now();
    loop {
        let ready = nodes.get_opt(name).await?.is_some_and(|node| {
            node.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if ready {
            return Ok(());
        }
        ensure!(
            start.elapsed() < NODE_DEADLINE,
            "node {name} was not Ready within {NODE_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The shims `berth up` started for this data directory (`berth shim --state-dir <data dir>/…`).
pub fn shims(data_dir: &Path) -> Vec<u32> {
    let data_dir = data_dir.to_string_lossy();
    processes()
        .into_iter()
        .filter(|(_, argv)| {
            argv.get(1).is_some_and(|a| a == "shim")
                && argv.iter().any(|a| a.starts_with(data_dir.as_ref()))
        })
        .map(|(pid, _)| pid)
        .collect()
}

pub async fn wait_no_shims(data_dir: &Path) -> Result<()> {
    let start = Instant::now();
    loop {
        let left = shims(data_dir);
        if left.is_empty() {
            return Ok(());
        }
        ensure!(
            start.elapsed() < POD_DEADLINE,
            "{} shims still running {POD_DEADLINE:?} after their Pods were deleted",
            left.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the agent has cleaned up after every deleted Pod: no container state under `<data>/c` and no Pod
/// record under `<data>/agent/pods`. Both go a little after the shims exit (the Pods' network is detached one
/// Pod at a time), so a bench that stops `berth up` once the shims are gone would leave them to `berth down`.
pub async fn wait_agent_clean(data_dir: &Path) -> Result<()> {
    let entries = |dir: PathBuf| std::fs::read_dir(dir).map_or(0, |d| d.count());
    let start = Instant::now();
    loop {
        let (containers, pods) = (
            entries(data_dir.join("c")),
            entries(data_dir.join("agent/pods")),
        );
        if containers == 0 && pods == 0 {
            return Ok(());
        }
        ensure!(
            start.elapsed() < POD_DEADLINE,
            "{containers} containers' state and {pods} Pod records left {POD_DEADLINE:?} after their Pods were deleted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `berth up` and its shims, apart.
pub fn berth_memory(up: u32, data_dir: &Path) -> (Memory, Memory) {
    let mut process = Memory::default();
    process.add(up);
    let mut shim = Memory::default();
    for pid in shims(data_dir) {
        shim.add(pid);
    }
    (process, shim)
}

pub fn sum(parts: &[Memory]) -> Memory {
    Memory {
        processes: parts.iter().map(|m| m.processes).sum(),
        rss_kib: parts.iter().map(|m| m.rss_kib).sum(),
        pss_kib: parts.iter().map(|m| m.pss_kib).sum(),
    }
}

pub fn print_memory(what: &str, m: Memory) {
    println!(
        "- {what}: {} processes, RSS {:.1} MiB, PSS {:.1} MiB",
        m.processes,
        Memory::mib(m.rss_kib),
        Memory::mib(m.pss_kib),
    );
}

/// Every process's id and argv.
pub fn processes() -> Vec<(u32, Vec<String>)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let argv = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some((pid, argv))
        })
        .collect()
}

/// The parent's pid, from /proc/<pid>/stat (after the command name, which may hold spaces).
pub fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// VmRSS from /proc/<pid>/status and Pss from /proc/<pid>/smaps_rollup, in KiB.
pub fn process_memory(pid: u32) -> Option<(u64, u64)> {
    let field = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    Some((field(&status, "VmRSS:")?, field(&rollup, "Pss:")?))
}

/// A Pod running busybox's `sleep`, labelled `label=run`, deleted without a grace period (PID 1 ignores
/// SIGTERM).
pub fn sleep_pod(name: &str, label: &str, run: &str, image: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some([(label.to_owned(), run.to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            termination_grace_period_seconds: Some(0),
            containers: vec![Container {
                name: "main".to_owned(),
                image: Some(image.to_owned()),
                command: Some(vec!["/bin/sleep".to_owned(), "3600".to_owned()]),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// A peer tool the bench compares with: `command --version` must run; when it does not, Debian's `package`
/// is installed with apt-get.
pub fn ensure_tool(command: &str, package: &str) -> Result<()> {
    let present = || {
        Command::new(command)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if present() {
        return Ok(());
    }
    println!("- {command} is missing: installing Debian's {package} with apt-get");
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-qq", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ensure!(
        installed && present(),
        "{command} is needed and `apt-get install {package}` failed: install it"
    );
    Ok(())
}

/// A ratio for a Markdown table, bold, or a dash when there is nothing to divide by.
pub fn ratio(ours: f64, theirs: f64) -> String {
    if theirs > 0.0 {
        format!("**{:.2}**", ours / theirs)
    } else {
        "–".to_owned()
    }
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// The process a Pod's container runs (the child of its shim, which is a child subreaper), found by the Pod's
/// uid: container ids start with the uid's alphanumeric characters.
pub fn pod_process(data_dir: &Path, pod_uid: &str) -> Option<u32> {
    let compact: String = pod_uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let all = processes();
    let shim = all.iter().find_map(|(pid, argv)| {
        let ours = argv.get(1).is_some_and(|a| a == "shim")
            && argv.iter().any(|a| {
                Path::new(a).starts_with(data_dir)
                    && Path::new(a)
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&compact))
            });
        ours.then_some(*pid)
    })?;
    all.iter()
        .map(|(pid, _)| *pid)
        .find(|pid| parent(*pid) == Some(shim))
}

/// Runs `work` on a thread of its own that has joined the network namespace of process `pid` (setns changes
/// the calling thread only, so the bench's other threads stay in the host's namespace).
pub fn in_netns_of<T: Send + 'static>(
    pid: u32,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let path = format!("/proc/{pid}/ns/net");
    let ns = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering {path}"))?;
        work()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread in process {pid}'s network namespace panicked"))?
}

/// Benches start containers and networks: they run as root.
pub fn ensure_root() -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    ensure!(
        std::fs::metadata("/proc/self")?.uid() == 0,
        "run as root: the bench starts containers and Pod networks"
    );
    Ok(())
}

/// The `berth` binary a bench runs: the one given (`--berth-bin`, `$BERTH_BIN`) or the workspace's release
/// build, made absolute; when it is not there, an error that says how to build it.
pub fn release_berth(given: Option<PathBuf>) -> Result<PathBuf> {
    let bin = given.unwrap_or_else(|| crate::workspace_bin("release"));
    bin.canonicalize().with_context(|| {
        format!(
            "{} is not there: build it with `cargo build --release -p berth -p berth-e2e --bins`, or pass \
             --berth-bin",
            bin.display()
        )
    })
}

/// The outcome of a timed phase of API requests ([`drive`]).
pub struct Phase {
    pub elapsed: Duration,
    /// Latencies of the successful requests, sorted.
    pub latencies: Vec<Duration>,
    pub errors: Vec<String>,
}

impl Phase {
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at percentile `p` (0 to 1) in milliseconds; NaN when no request succeeded.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        ms(percentile(&self.latencies, p))
    }
}

/// Runs `op(0..total)` with `concurrency` requests in flight, timing each one and the whole phase.
pub async fn drive<F, Fut, E>(concurrency: usize, total: usize, op: F) -> Phase
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let next = next.clone();
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let sent = Instant::now();
                    match op(i).await {
                        Ok(()) => latencies.push(sent.elapsed()),
                        Err(e) => errors.push(format!("request {i}: {e}")),
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    let mut errors = Vec::new();
    for worker in workers {
        match worker.await {
            Ok((l, e)) => {
                latencies.extend(l);
                errors.extend(e);
            }
            Err(e) => errors.push(format!("a worker task failed: {e}")),
        }
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Phase {
        elapsed,
        latencies,
        errors,
    }
}

/// Opens a client's connections before a phase is timed, so that TLS handshakes are not counted: `concurrency`
/// × 4 requests `op` (`what` names them), which must all succeed.
pub async fn warm_up<F, Fut, E>(what: &str, concurrency: usize, op: F) -> Result<()>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    let phase = drive(concurrency, concurrency * 4, op).await;
    ensure!(
        phase.errors.is_empty(),
        "warm-up {what} failed: {:?}",
        phase.errors
    );
    Ok(())
}

/// Prints a line for each phase whose requests failed (`what` says which: "of the creates at c=32"), with its
/// first three errors; an error when any request failed.
pub fn report_failures<'a>(phases: impl IntoIterator<Item = (String, &'a Phase)>) -> Result<()> {
    let mut failed = 0;
    for (what, phase) in phases {
        if phase.errors.is_empty() {
            continue;
        }
        failed += phase.errors.len();
        println!(
            "- {} {what} failed; first: {}",
            phase.errors.len(),
            phase
                .errors
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    ensure!(failed == 0, "{failed} requests failed (see above)");
    Ok(())
}

/// VmRSS and VmHWM (its peak) of process `pid`, as /proc/<pid>/status prints them.
pub fn rss_and_peak(pid: u32) -> String {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => status
            .lines()
            .filter(|l| l.starts_with("VmRSS:") || l.starts_with("VmHWM:"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) => format!("unknown ({e})"),
    }
}
