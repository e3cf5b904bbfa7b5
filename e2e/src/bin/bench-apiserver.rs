//! Benchmarks `berth apiserver` through kube-rs: ConfigMap creates/s and GETs/s at a few concurrencies, next to
//! the disk's fsync rate measured in the server's own data directory just before and just after each create
//! phase (a shared machine's disk drifts; the two figures bracket the phase). A create is
//! acknowledged only once durable, so one client can go no faster than the disk syncs; concurrent clients share
//! syncs through the store's group commit. Prints a Markdown table and exits (non-zero if any request failed).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use berth_e2e::Server;
use berth_e2e::bench::{
    Phase, drive, load_average, release_berth, report_failures, rss_and_peak, warm_up,
};
use clap::Parser;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

#[derive(Parser)]
#[command(
    about = "Creates/s and GETs/s of a fresh `berth apiserver`, against the disk's fsync rate"
)]
struct Args {
    /// The berth binary to run (default: the workspace's release build).
    #[arg(long, env = "BERTH_BIN")]
    berth_bin: Option<PathBuf>,
    /// ConfigMap creates per concurrency level.
    #[arg(long, default_value_t = 2_000)]
    creates: usize,
    /// ConfigMap GETs per concurrency level (spread over the ConfigMaps that level created).
    #[arg(long, default_value_t = 20_000)]
    gets: usize,
    /// Small write + fsync iterations per fsync measurement.
    #[arg(long, default_value_t = 500)]
    fsyncs: usize,
    /// Concurrency levels (requests in flight), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    concurrency: Vec<usize>,
}

struct Level {
    concurrency: usize,
    fsyncs_before: f64,
    fsyncs_after: f64,
    creates: Phase,
    gets: Phase,
}

impl Level {
    /// Creates per disk sync: about 1 when each create waits for its own sync, above 1 when creates share syncs.
    fn creates_per_fsync(&self) -> f64 {
        self.creates.rate() / ((self.fsyncs_before + self.fsyncs_after) / 2.0)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.creates > 0 && args.gets > 0 && args.fsyncs > 0,
        "--creates, --gets and --fsyncs must be positive"
    );
    ensure!(
        !args.concurrency.contains(&0),
        "--concurrency levels must be positive"
    );
    let bin = release_berth(args.berth_bin.clone())?;

    let server = Server::start_bin(bin.clone());
    let data_dir = server.data_dir.path().to_owned();
    let client = server.client().await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let namespaces: Api<Namespace> = Api::all(client);

    println!("berth apiserver benchmark");
    println!("- binary: {}", bin.display());
    println!("- data dir: {} (fsyncs measured there)", data_dir.display());
    println!(
        "- per level: {} creates, {} GETs, {} write+fsync; load average at start: {}",
        args.creates,
        args.gets,
        args.fsyncs,
        load_average()
    );

    let mut levels = Vec::new();
    for (level, &concurrency) in args.concurrency.iter().enumerate() {
        let api = namespaces.clone();
        warm_up("GETs of namespace default", concurrency, move |_| {
            let api = api.clone();
            async move { api.get("default").await.map(drop) }
        })
        .await?;

        let fsyncs_before = measure_fsyncs(&data_dir, args.fsyncs).await?;
        // Levels may repeat (`--concurrency 1,1`); each creates its own names.
        let prefix = format!("bench-{level}-c{concurrency}-");
        let api = configmaps.clone();
        let names = prefix.clone();
        let creates = drive(concurrency, args.creates, move |i| {
            let api = api.clone();
            let object = config_map(format!("{names}{i}"));
            async move { api.create(&PostParams::default(), &object).await.map(drop) }
        })
        .await;
        let fsyncs_after = measure_fsyncs(&data_dir, args.fsyncs).await?;

        let api = configmaps.clone();
        let created = args.creates;
        let gets = drive(concurrency, args.gets, move |i| {
            let api = api.clone();
            let name = format!("{prefix}{}", i % created);
            async move { api.get(&name).await.map(drop) }
        })
        .await;

        levels.push(Level {
            concurrency,
            fsyncs_before,
            fsyncs_after,
            creates,
            gets,
        });
    }

    println!();
    println!(
        "| concurrency | creates/s | create p50 ms | create p99 ms | GETs/s | GET p50 ms | GET p99 ms | fsyncs/s before | fsyncs/s after | creates/s ÷ mean fsyncs/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for level in &levels {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.3} | {:.3} | {:.0} | {:.0} | {:.2} |",
            level.concurrency,
            level.creates.rate(),
            level.creates.percentile_ms(0.5),
            level.creates.percentile_ms(0.99),
            level.gets.rate(),
            level.gets.percentile_ms(0.5),
            level.gets.percentile_ms(0.99),
            level.fsyncs_before,
            level.fsyncs_after,
            level.creates_per_fsync(),
        );
    }
    println!();
    if let (Some(first), Some(last)) = (levels.first(), levels.last())
        && levels.len() > 1
    {
        println!(
            "- creates/s at c={} ÷ creates/s at c={}: {:.1}; GETs/s: {:.1}",
            last.concurrency,
            first.concurrency,
            last.creates.rate() / first.creates.rate(),
            last.gets.rate() / first.gets.rate(),
        );
    }
    if let Some(pid) = server.pid() {
        println!("- server memory after the run: {}", rss_and_peak(pid));
    }
    println!("- load average at end: {}", load_average());

    report_failures(levels.iter().flat_map(|level| {
        [("creates", &level.creates), ("GETs", &level.gets)]
            .map(|(what, phase)| (format!("of the {what} at c={}", level.concurrency), phase))
    }))
}

fn config_map(name: String) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            ..ObjectMeta::default()
        },
        data: Some([("config".to_owned(), "x".repeat(100))].into()),
        ..ConfigMap::default()
    }
}

async fn measure_fsyncs(dir: &Path, iterations: usize) -> Result<f64> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || fsync_rate(&dir, iterations)).await?
}

/// Appends `iterations` 4 KiB blocks (one SQLite page) to a new file in `dir`, each followed by fsync, and returns
/// the syncs per second: the rate one writer waiting for each commit can reach. fsync rather than fdatasync
/// because that is what the server's SQLite calls on each WAL commit (seen with strace).
fn fsync_rate(dir: &Path, iterations: usize) -> Result<f64> {
    let path = dir.join("fsync-probe");
    let mut file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let block = [0x5a_u8; 4096];
    let start = Instant::now();
    for _ in 0..iterations {
        file.write_all(&block)?;
        file.sync_all()?;
    }
    let rate = iterations as f64 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    Ok(rate)
}
