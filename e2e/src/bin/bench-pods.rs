//! Benchmarks Pods on berth's node agent against `podman kube play`, side by side in one run on the same
//! busybox image served by a loopback registry: apply → Running one Pod at a time (median, p90), many Pods
//! applied at once → all Running, and the memory each keeps while idle and with those Pods running (berth:
//! the `berth up` process and its shims; podman: its conmon processes, pause containers and DNS server, as it
//! has no daemon). Each side gets a bridge and a /24 of its own. Prints a Markdown table with the ratios berth/podman and removes everything it created.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use berth_e2e::bench::{
    BerthUp, Memory, POD_DEADLINE, berth_memory, ensure_root, load_average, ms, percentile,
    print_memory, ratio, release_berth, sleep_pod, sum, wait_agent_clean, wait_no_shims,
    wait_node_ready,
};
use berth_e2e::network::TestNetwork;
use berth_e2e::podman::{Podman, ensure_podman, podman_version};
use berth_e2e::registry::Registry;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::watch;

/// The label every Pod of a run carries (its value names the run).
const RUN_LABEL: &str = "berth-bench";
#[derive(Parser)]
#[command(about = "Pod apply → Running and memory: berth up against podman kube play")]
struct Args {
    /// The berth binary to run (default: the workspace's release build).
    #[arg(long, env = "BERTH_BIN")]
    berth_bin: Option<PathBuf>,
    /// Pods applied one at a time (each deleted before the next).
    #[arg(long, default_value_t = 20)]
    sequential: usize,
    /// Pods applied at once.
    #[arg(long, default_value_t = 100)]
    at_once: usize,
}

/// What one side measured.
struct Figures {
    /// Apply → Running of each sequential Pod, sorted.
    sequential: Vec<Duration>,
    /// podman only: apply → `podman kube play` returned (it starts the pod before returning), sorted.
    returned: Vec<Duration>,
    /// Apply of the first of the at-once Pods → the last one Running.
    at_once: Duration,
    /// Memory with no Pod running.
    idle: Memory,
    /// Memory with the at-once Pods running.
    loaded: Memory,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.sequential > 0 && args.at_once > 0,
        "--sequential and --at-once must be positive"
    );
    ensure_root()?;
    let bin = release_berth(args.berth_bin.clone())?;
    ensure_podman()?;

    let run = format!("{:x}", std::process::id());
    let registry = Registry::start();
    let image = registry.push_busybox("bench/busybox:1");

    println!("Pod benchmark: berth up against podman kube play");
    println!("- berth: {}", bin.display());
    println!("- podman: {}", podman_version()?);
    println!("- image: {image} (busybox-static, `sleep 3600`), from a loopback docker-registry");
    println!(
        "- {} Pods one at a time, then {} at once; load average at start: {}",
        args.sequential,
        args.at_once,
        load_average()
    );

    let berth = bench_berth(&bin, &run, &image, &args).await?;
    println!("- berth done; load average: {}", load_average());
    let podman = bench_podman(&run, &registry.host(), &image, &args)?;
    println!("- podman done; load average: {}", load_average());

    print_table(&berth, &podman, args.at_once);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// berth

/// Which bench Pods the API server has, and when each was first seen Running (as the watch delivered it).
#[derive(Default)]
struct PodTracker {
    present: HashSet<String>,
    running: HashMap<String, Instant>,
}

async fn bench_berth(bin: &Path, run: &str, image: &str, args: &Args) -> Result<Figures> {
    let node = format!("bench-pods-{run}");
    let up = BerthUp::start(bin, &node, &[]);
    let pid = up.server.pid().context("berth up is not running")?;
    let data_dir = up.server.data_dir.path().to_owned();
    let client = up.server.client().await;
    wait_node_ready(&Api::all(client.clone()), &node).await?;

    let pods: Api<Pod> = Api::namespaced(client, "default");
    let (tx, rx) = watch::channel(PodTracker::default());
    let selector = format!("{RUN_LABEL}={run}");
    let stream = watcher(pods.clone(), watcher::Config::default().labels(&selector))
        .default_backoff()
        .try_for_each(move |event| {
            match event {
                watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                    let name = pod.name_any();
                    let running =
                        pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                    tx.send_modify(|t| {
                        t.present.insert(name.clone());
                        if running {
                            t.running.entry(name).or_insert_with(Instant::now);
                        }
                    });
                }
                watcher::Event::Delete(pod) => {
                    let name = pod.name_any();
                    tx.send_modify(|t| {
                        t.present.remove(&name);
                        t.running.remove(&name);
                    });
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
            std::future::ready(Ok(()))
        });
    let watching = tokio::spawn(stream);
    let mut rx = rx;

    // The first Pod pulls and unpacks the image; it is not counted.
    run_one_berth(
        &pods,
        &mut rx,
        &data_dir,
        &sleep_pod(&format!("bench-warmup-{run}"), RUN_LABEL, run, image),
    )
    .await?;
    let (process, shim) = berth_memory(pid, &data_dir);
    print_memory("berth idle, berth up", process);
    print_memory("berth idle, shims", shim);
    let idle = sum(&[process, shim]);

    let mut sequential = Vec::with_capacity(args.sequential);
    for i in 0..args.sequential {
        let pod = sleep_pod(&format!("bench-seq-{run}-{i}"), RUN_LABEL, run, image);
        sequential.push(run_one_berth(&pods, &mut rx, &data_dir, &pod).await?);
    }
    sequential.sort_unstable();

    let names: Vec<String> = (0..args.at_once)
        .map(|i| format!("bench-many-{run}-{i}"))
        .collect();
    let start = Instant::now();
    futures::stream::iter(names.iter().map(|name| {
        let pods = pods.clone();
        let pod = sleep_pod(name, RUN_LABEL, run, image);
        async move { pods.create(&PostParams::default(), &pod).await }
    }))
    .buffer_unordered(16)
    .try_collect::<Vec<_>>()
    .await
    .context("creating the Pods applied at once")?;
    let all_running = wait_tracker(&mut rx, "all Pods Running", POD_DEADLINE, |t| {
        names.iter().all(|n| t.running.contains_key(n))
    })
    .await?;
    let at_once = names
        .iter()
        .filter_map(|n| all_running.running.get(n))
        .max()
        .map_or(Duration::ZERO, |last| last.duration_since(start));
    let (process, shim) = berth_memory(pid, &data_dir);
    ensure!(
        shim.processes == args.at_once,
        "found {} shims with {} Pods running: expected one per Pod",
        shim.processes,
        args.at_once
    );
    print_memory(
        &format!("berth with {} Pods, berth up", args.at_once),
        process,
    );
    print_memory(&format!("berth with {} Pods, shims", args.at_once), shim);
    let loaded = sum(&[process, shim]);

    let grace = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    for name in &names {
        pods.delete(name, &grace).await?;
    }
    wait_tracker(&mut rx, "all Pods deleted", POD_DEADLINE, |t| {
        names.iter().all(|n| !t.present.contains(n))
    })
    .await?;
    wait_no_shims(&data_dir).await?;
    wait_agent_clean(&data_dir).await?;
    watching.abort();
    drop(up);
    Ok(Figures {
        sequential,
        returned: Vec::new(),
        at_once,
        idle,
        loaded,
    })
}

/// Creates the Pod, waits until it runs, deletes it and waits until it is gone from the API and its shim has
/// exited (as `podman pod rm` returns once the pod is gone); returns create → Running.
async fn run_one_berth(
    pods: &Api<Pod>,
    rx: &mut watch::Receiver<PodTracker>,
    data_dir: &Path,
    pod: &Pod,
) -> Result<Duration> {
    let name = pod.name_any();
    let start = Instant::now();
    pods.create(&PostParams::default(), pod)
        .await
        .with_context(|| format!("creating Pod {name}"))?;
    let running = wait_tracker(rx, &format!("{name} Running"), POD_DEADLINE, |t| {
        t.running.contains_key(&name)
    })
    .await?;
    let elapsed = running.running[&name].duration_since(start);
    pods.delete(
        &name,
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await
    .with_context(|| format!("deleting Pod {name}"))?;
    wait_tracker(rx, &format!("{name} deleted"), POD_DEADLINE, |t| {
        !t.present.contains(&name)
    })
    .await?;
    wait_no_shims(data_dir).await?;
    Ok(elapsed)
}

/// Waits until the tracker satisfies `ok`; returns a copy of what it saw then.
async fn wait_tracker(
    rx: &mut watch::Receiver<PodTracker>,
    what: &str,
    deadline: Duration,
    ok: impl FnMut(&PodTracker) -> bool,
) -> Result<PodTracker> {
    match tokio::time::timeout(deadline, rx.wait_for(ok)).await {
        Ok(Ok(t)) => Ok(PodTracker {
            present: t.present.clone(),
            running: t.running.clone(),
        }),
        Ok(Err(_)) => bail!("the Pod watch ended while waiting for {what}"),
        Err(_) => bail!("timed out after {deadline:?} waiting for {what}"),
    }
}

// ---------------------------------------------------------------------------------------------------------
// podman

/// Plays one pod, waits until podman says it runs, removes it; returns play → returned and play → Running.
fn podman_run_one(podman: &Podman, pod: &Pod) -> Result<(Duration, Duration)> {
    let name = pod.name_any();
    let yaml = serde_yaml::to_string(pod)?;
    let start = Instant::now();
    podman.play(&yaml, &format!("{name}.yaml"))?;
    let returned = start.elapsed();
    let running = podman.wait_running(std::slice::from_ref(&name), POD_DEADLINE)?;
    podman.run(&["pod", "rm", "--force", "--time", "0", &name])?;
    Ok((returned, running.duration_since(start)))
}

fn bench_podman(run: &str, registry: &str, image: &str, args: &Args) -> Result<Figures> {
    let network = TestNetwork::pick();
    let podman = Podman::new(run, &network.cidr)?;
    println!("- podman: network {} on {}", podman.network, network.cidr);
    podman
        .pull(image)
        .with_context(|| format!("from {registry}"))?;
    // The first pod builds podman's pause image; it is not counted.
    podman_run_one(
        &podman,
        &sleep_pod(&format!("bench-warmup-{run}"), RUN_LABEL, run, image),
    )?;
    let idle = podman.memory().total();

    let mut sequential = Vec::with_capacity(args.sequential);
    let mut returned = Vec::with_capacity(args.sequential);
    for i in 0..args.sequential {
        let (r, s) = podman_run_one(
            &podman,
            &sleep_pod(&format!("bench-seq-{run}-{i}"), RUN_LABEL, run, image),
        )?;
        returned.push(r);
        sequential.push(s);
    }
    sequential.sort_unstable();
    returned.sort_unstable();

    let names: Vec<String> = (0..args.at_once)
        .map(|i| format!("bench-many-{run}-{i}"))
        .collect();
    let yaml = names
        .iter()
        .map(|n| serde_yaml::to_string(&sleep_pod(n, RUN_LABEL, run, image)))
        .collect::<Result<Vec<_>, _>>()?
        .join("---\n");
    let start = Instant::now();
    podman.play(&yaml, "many.yaml")?;
    let at_once = podman
        .wait_running(&names, POD_DEADLINE)?
        .duration_since(start);
    let memory = podman.memory();
    ensure!(
        memory.conmon.processes >= 2 * args.at_once,
        "found {} conmon processes with {} pods running: expected two per pod (pause and main)",
        memory.conmon.processes,
        args.at_once
    );
    for (what, m) in [
        ("conmon", memory.conmon),
        ("pause containers", memory.infra),
        ("aardvark-dns", memory.dns),
    ] {
        print_memory(&format!("podman with {} pods, {what}", args.at_once), m);
    }
    let loaded = memory.total();
    drop(podman);
    Ok(Figures {
        sequential,
        returned,
        at_once,
        idle,
        loaded,
    })
}

// ---------------------------------------------------------------------------------------------------------
// report

fn print_table(berth: &Figures, podman: &Figures, pods: usize) {
    println!();
    println!("| measure | berth | podman | berth/podman |");
    println!("| --- | ---: | ---: | ---: |");
    for (label, p) in [("median", 0.5), ("p90", 0.9)] {
        let (b, q) = (
            ms(percentile(&berth.sequential, p)),
            ms(percentile(&podman.sequential, p)),
        );
        println!(
            "| apply → Running, {label} of {} (ms) | {b:.0} | {q:.0} | {} |",
            berth.sequential.len(),
            ratio(b, q)
        );
    }
    let (b, q) = (
        ms(percentile(&berth.sequential, 0.5)),
        ms(percentile(&podman.returned, 0.5)),
    );
    println!(
        "| apply → Running (berth) or `kube play` returned (podman), median (ms) | {b:.0} | {q:.0} | {} |",
        ratio(b, q)
    );
    let (b, q) = (berth.at_once.as_secs_f64(), podman.at_once.as_secs_f64());
    println!(
        "| {pods} Pods at once → all Running (s) | {b:.2} | {q:.2} | {} |",
        ratio(b, q)
    );
    for (label, b, q) in [
        ("RSS idle (MiB)", berth.idle.rss_kib, podman.idle.rss_kib),
        ("PSS idle (MiB)", berth.idle.pss_kib, podman.idle.pss_kib),
        (
            "RSS with the Pods (MiB)",
            berth.loaded.rss_kib,
            podman.loaded.rss_kib,
        ),
        (
            "PSS with the Pods (MiB)",
            berth.loaded.pss_kib,
            podman.loaded.pss_kib,
        ),
    ] {
        let (b, q) = (Memory::mib(b), Memory::mib(q));
        println!("| {label} | {b:.1} | {q:.1} | {} |", ratio(b, q));
    }
    let (b_rss, b_pss) = berth.loaded.per_pod_kib(&berth.idle, pods);
    let (q_rss, q_pss) = podman.loaded.per_pod_kib(&podman.idle, pods);
    println!(
        "| RSS per Pod (KiB) | {b_rss:.0} | {q_rss:.0} | {} |",
        ratio(b_rss, q_rss)
    );
    println!(
        "| PSS per Pod (KiB) | {b_pss:.0} | {q_pss:.0} | {} |",
        ratio(b_pss, q_pss)
    );
    println!(
        "| processes counted with the Pods | {} | {} | |",
        berth.loaded.processes, podman.loaded.processes
    );
    println!();
    println!(
        "berth counts the `berth up` process and its shims; podman has no daemon and counts its conmon \
         processes, pause containers and aardvark-dns. Container processes (`sleep`) are not counted on either side."
    );
}
