//! Benchmarks server-side apply against a plain update on a fresh `berth apiserver`: ConfigMap writes/s through
//! kube-rs at a few concurrencies. Each write changes one value of an existing ConfigMap, by PUT (replace), by
//! JSON merge patch, or by apply (`Patch::Apply`, forced, one field manager). Every write records
//! managedFields, as upstream's do; an apply also merges and prunes by field ownership. Prints a Markdown table
//! and exits (non-zero if any request failed).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, ensure};
use berth_e2e::Server;
use berth_e2e::bench::{
    Phase, drive, load_average, release_berth, report_failures, rss_and_peak, warm_up,
};
use clap::Parser;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};

#[derive(Parser)]
#[command(
    about = "Server-side apply vs. update and merge patch: ConfigMap writes/s of a fresh berth apiserver"
)]
struct Args {
    /// The berth binary to run (default: the workspace's release build).
    #[arg(long, env = "BERTH_BIN")]
    berth_bin: Option<PathBuf>,
    /// Writes per kind and concurrency level.
    #[arg(long, default_value_t = 2_000)]
    writes: usize,
    /// ConfigMaps the writes are spread over.
    #[arg(long, default_value_t = 64)]
    objects: usize,
    /// Keys per ConfigMap (each 100 bytes); a write changes one of them.
    #[arg(long, default_value_t = 10)]
    keys: usize,
    /// Concurrency levels (requests in flight), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    concurrency: Vec<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Write {
    Update,
    MergePatch,
    Apply,
}

impl Write {
    const ALL: [Write; 3] = [Write::Update, Write::MergePatch, Write::Apply];

    fn name(self) -> &'static str {
        match self {
            Write::Update => "update (PUT)",
            Write::MergePatch => "merge patch",
            Write::Apply => "apply",
        }
    }
}

/// A ConfigMap with `keys` values; `round` changes the value of key `round % keys`.
fn config_map(name: &str, keys: usize, round: usize) -> ConfigMap {
    let data = (0..keys)
        .map(|k| {
            let value = if k == round % keys {
                format!("{round:0>100}")
            } else {
                "x".repeat(100)
            };
            (format!("key-{k}"), value)
        })
        .collect();
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.writes > 0 && args.objects > 0 && args.keys > 0,
        "--writes, --objects and --keys must be positive"
    );
    ensure!(
        !args.concurrency.contains(&0),
        "--concurrency levels must be positive"
    );
    let bin = release_berth(args.berth_bin.clone())?;
    let server = Server::start_bin(bin.clone());
    let client = server.client().await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client, "default");
    let apply = PatchParams::apply("bench").force();

    println!("berth apiserver: server-side apply vs. update");
    println!("- binary: {}", bin.display());
    println!(
        "- per kind and level: {} writes over {} ConfigMaps of {} keys × 100 bytes; load average at start: {}",
        args.writes,
        args.objects,
        args.keys,
        load_average()
    );

    // The objects, created by apply so that every kind of write meets managedFields.
    let names: Arc<Vec<String>> =
        Arc::new((0..args.objects).map(|i| format!("bench-{i}")).collect());
    for name in names.iter() {
        configmaps
            .patch(name, &apply, &Patch::Apply(config_map(name, args.keys, 0)))
            .await?;
    }

    let mut results: BTreeMap<(usize, Write), Phase> = BTreeMap::new();
    let mut round = 1;
    for &concurrency in &args.concurrency {
        let api = configmaps.clone();
        let first = names[0].clone();
        warm_up("GETs", concurrency, move |_| {
            let api = api.clone();
            let name = first.clone();
            async move { api.get(&name).await.map(drop) }
        })
        .await?;

        for write in Write::ALL {
            let api = configmaps.clone();
            let names = names.clone();
            let params = apply.clone();
            let keys = args.keys;
            let base = round;
            let phase = drive(concurrency, args.writes, move |i| {
                let api = api.clone();
                let name = names[i % names.len()].clone();
                let object = config_map(&name, keys, base + i);
                let params = params.clone();
                async move {
                    match write {
                        Write::Update => api
                            .replace(&name, &PostParams::default(), &object)
                            .await
                            .map(drop),
                        Write::MergePatch => api
                            .patch(&name, &PatchParams::default(), &Patch::Merge(&object))
                            .await
                            .map(drop),
                        Write::Apply => api
                            .patch(&name, &params, &Patch::Apply(&object))
                            .await
                            .map(drop),
                    }
                }
            })
            .await;
            round += args.writes;
            results.insert((concurrency, write), phase);
        }
    }

    println!();
    println!("| concurrency | write | writes/s | p50 ms | p99 ms | writes/s ÷ update's |");
    println!("|---:|---|---:|---:|---:|---:|");
    for ((concurrency, write), phase) in &results {
        let update = results[&(*concurrency, Write::Update)].rate();
        println!(
            "| {concurrency} | {} | {:.0} | {:.2} | {:.2} | {:.2} |",
            write.name(),
            phase.rate(),
            phase.percentile_ms(0.5),
            phase.percentile_ms(0.99),
            phase.rate() / update,
        );
    }
    println!();
    if let Some(pid) = server.pid() {
        println!("- server memory after the run: {}", rss_and_peak(pid));
    }
    println!("- load average at end: {}", load_average());

    report_failures(results.iter().map(|((concurrency, write), phase)| {
        (format!("{} writes at c={concurrency}", write.name()), phase)
    }))
}
