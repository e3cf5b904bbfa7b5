//! Benchmark: the node agent's memory alone, against issue 4's aims (≤ 30 MiB idle, ≤ 1 MiB per Pod, shims
//! counted). `berth up --disable-agent` serves the API; `berth agent` runs as a process of its own against its
//! kubeconfig, on a bridge and /24 of its own, with the same busybox image from a loopback registry as
//! bench-pods. Measured: the agent's RSS and PSS idle (after a warm-up Pod that pulls the image has come and
//! gone), then with N `sleep` Pods running, agent and shims apart. Prints a Markdown table with the ratios
//! to the aims, and removes everything it created.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use berth_e2e::bench::{
    BerthUp, Memory, POD_DEADLINE, ensure_root, load_average, print_breakdown, print_memory,
    release_berth, shims, sleep_pod, sum, wait_no_shims, wait_node_ready,
};
use berth_e2e::network::TestNetwork;
use berth_e2e::registry::Registry;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};

/// The label every Pod of a run carries (its value names the run).
const RUN_LABEL: &str = "berth-bench-agent";
/// Issue 4's aims.
const AIM_IDLE_MIB: f64 = 30.0;
const AIM_PER_POD_KIB: f64 = 1024.0;

#[derive(Parser)]
#[command(about = "The node agent's memory alone, idle and with N Pods, against issue 4's aims")]
struct Args {
    /// The berth binary to run (default: the workspace's release build).
    #[arg(long, env = "BERTH_BIN")]
    berth_bin: Option<PathBuf>,
    /// Pods running while the loaded figure is taken.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// `KEY=VALUE` set in the agent's environment (e.g. `MALLOC_ARENA_MAX=2`), to try a setting.
    #[arg(long)]
    agent_env: Vec<String>,
}

/// `berth agent` as a process of its own, killed on drop (before `berth down` cleans its containers up).
struct Agent(Child);

impl Agent {
    fn start(bin: &Path, up: &BerthUp, node: &str, env: &[(String, String)]) -> Result<Agent> {
        let data_dir = up.server.data_dir.path();
        let network = TestNetwork::pick();
        println!(
            "- berth agent: bridge {}, Pod CIDR {}",
            network.bridge, network.cidr
        );
        let log = std::fs::File::create(data_dir.join("agent.log"))?;
        let child = Command::new(bin)
            .arg("agent")
            .arg("--kubeconfig")
            .arg(up.server.kubeconfig())
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--apiserver-data-dir")
            .arg(data_dir)
            .args(["--node-name", node, "--kubelet-listen", "127.0.0.1:0"])
            .args(network.flags())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting berth agent")?;
        Ok(Agent(child))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls the run's Pods until `done` holds for their list, within the Pod deadline.
async fn wait_pods(
    pods: &Api<Pod>,
    run: &str,
    what: &str,
    mut done: impl FnMut(&[Pod]) -> bool,
) -> Result<()> {
    let start = Instant::now();
    let selector = format!("{RUN_LABEL}={run}");
    loop {
        let list = pods.list(&ListParams::default().labels(&selector)).await?;
        if done(&list.items) {
            return Ok(());
        }
        ensure!(
            start.elapsed() < POD_DEADLINE,
            "timed out after {POD_DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// The agent's threads, from /proc/<pid>/status.
fn threads(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

async fn delete_all(pods: &Api<Pod>, run: &str, data_dir: &Path) -> Result<()> {
    let grace = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    let selector = format!("{RUN_LABEL}={run}");
    pods.delete_collection(&grace, &ListParams::default().labels(&selector))
        .await?;
    wait_pods(pods, run, "the Pods to go", |pods| pods.is_empty()).await?;
    wait_no_shims(data_dir).await
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.pods > 0, "--pods must be positive");
    let env = args
        .agent_env
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("--agent-env {kv:?} is not KEY=VALUE"))
        })
        .collect::<Result<Vec<_>>>()?;
    ensure_root()?;
    let bin = release_berth(args.berth_bin.clone())?;
    println!("- load average at start: {}", load_average());
    println!("- berth: {}", bin.display());
    let registry = Registry::start();
    let image = registry.push_busybox("bench/busybox:1");
    let run = format!("{:x}", std::process::id());
    let node = format!("bench-agent-{run}");
    let up = BerthUp::start(&bin, &node, &["--disable-agent"]);
    let data_dir = up.server.data_dir.path().to_owned();
    let agent = Agent::start(&bin, &up, &node, &env)?;
    let client = up.server.client().await;
    wait_node_ready(&Api::all(client.clone()), &node).await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");

    // The first Pod pulls and unpacks the image; it is not counted.
    pods.create(
        &PostParams::default(),
        &sleep_pod(&format!("warmup-{run}"), RUN_LABEL, &run, &image),
    )
    .await?;
    wait_pods(&pods, &run, "the warm-up Pod Running", |p| {
        p.iter().any(running)
    })
    .await?;
    delete_all(&pods, &run, &data_dir).await?;
    let mut idle = Memory::default();
    idle.add(agent.pid());
    ensure!(idle.processes == 1, "the agent is not running");
    print_memory("agent idle", idle);
    println!("- agent threads idle: {:?}", threads(agent.pid()));

    let names: Vec<String> = (0..args.pods).map(|i| format!("pod-{run}-{i}")).collect();
    futures::stream::iter(names.iter().map(|name| {
        let pods = pods.clone();
        let pod = sleep_pod(name, RUN_LABEL, &run, &image);
        async move { pods.create(&PostParams::default(), &pod).await }
    }))
    .buffer_unordered(16)
    .try_collect::<Vec<_>>()
    .await
    .context("creating the Pods")?;
    wait_pods(&pods, &run, "every Pod Running", |p| {
        p.iter().filter(|pod| running(pod)).count() == names.len()
    })
    .await?;
    let mut process = Memory::default();
    process.add(agent.pid());
    let mut shim = Memory::default();
    for pid in shims(&data_dir) {
        shim.add(pid);
    }
    ensure!(
        shim.processes == args.pods,
        "found {} shims with {} Pods running: expected one per Pod",
        shim.processes,
        args.pods
    );
    print_memory(&format!("agent with {} Pods", args.pods), process);
    print_memory(&format!("shims with {} Pods", args.pods), shim);
    print_breakdown(&format!("agent with {} Pods", args.pods), agent.pid());
    if let Some(pid) = shims(&data_dir).first() {
        print_breakdown("one of the shims", *pid);
    }
    println!(
        "- agent threads with {} Pods: {:?}",
        args.pods,
        threads(agent.pid())
    );
    let loaded = sum(&[process, shim]);
    delete_all(&pods, &run, &data_dir).await?;
    for pod in pods.list(&ListParams::default()).await?.items {
        println!("- left: {}", pod.name_any());
    }
    drop(agent);
    drop(up);
    println!("- load average at end: {}", load_average());

    let (rss_per_pod, pss_per_pod) = loaded.per_pod_kib(&idle, args.pods);
    let agent_per_pod = |total: u64, idle: u64| (total as f64 - idle as f64) / args.pods as f64;
    println!();
    println!("| measure | berth agent | aim | berth/aim |");
    println!("| --- | ---: | ---: | ---: |");
    for (what, mib) in [
        ("RSS idle (MiB)", Memory::mib(idle.rss_kib)),
        ("PSS idle (MiB)", Memory::mib(idle.pss_kib)),
    ] {
        println!(
            "| {what} | {mib:.1} | {AIM_IDLE_MIB:.0} | **{:.2}** |",
            mib / AIM_IDLE_MIB
        );
    }
    for (what, kib) in [
        ("RSS per Pod, shims counted (KiB)", rss_per_pod),
        ("PSS per Pod, shims counted (KiB)", pss_per_pod),
        (
            "agent's own RSS per Pod (KiB)",
            agent_per_pod(process.rss_kib, idle.rss_kib),
        ),
        (
            "shim RSS per Pod (KiB)",
            shim.rss_kib as f64 / args.pods as f64,
        ),
        (
            "shim PSS per Pod (KiB)",
            shim.pss_kib as f64 / args.pods as f64,
        ),
    ] {
        println!(
            "| {what} | {kib:.0} | {AIM_PER_POD_KIB:.0} | **{:.2}** |",
            kib / AIM_PER_POD_KIB
        );
    }
    Ok(())
}
