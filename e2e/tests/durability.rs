//! kill -9 in the middle of a stream of concurrent writes: every write the server acknowledged is there
//! after a restart, and resourceVersions keep increasing. Several writers at once exercise group commit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_e2e::Server;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const WRITERS: usize = 8;
/// Acknowledged writes before the kill: enough that it lands mid-stream, with batches in flight.
const ACKED_BEFORE_KILL: usize = 300;
/// Failed writes (all writers together) that show the writers kept going while the server was down.
const FAILED_WHILE_DOWN: usize = 20;
/// Acknowledged writes after the restart before the writers stop.
const ACKED_AFTER_RESTART: usize = 200;
const DEADLINE: Duration = Duration::from_secs(60);

/// What the server acknowledged for one ConfigMap: its content (`version`, a per-name write counter) and
/// the resourceVersion of that write.
#[derive(Debug, Clone, Copy)]
struct Acked {
    version: u64,
    rv: u64,
    /// Whether the request was sent after the restarted server was up.
    after_restart: bool,
}

#[derive(Default)]
struct Progress {
    acked: Mutex<BTreeMap<String, Acked>>,
    acks: AtomicUsize,
    failures: AtomicUsize,
    /// 0 before the restart completes, 1 after.
    epoch: AtomicU64,
    stop: AtomicBool,
}

impl Progress {
    fn record(&self, name: &str, version: u64, stored: &ConfigMap, after_restart: bool) {
        assert_eq!(
            stored_version(stored),
            Some(version),
            "the server answers with what was written"
        );
        let rv = rv_of(stored);
        let mut acked = self.acked.lock().unwrap();
        let entry = acked.entry(name.to_owned()).or_insert(Acked {
            version,
            rv,
            after_restart,
        });
        assert!(
            version >= entry.version,
            "one writer per name, so acknowledgements come in order"
        );
        *entry = Acked {
            version,
            rv,
            after_restart,
        };
        self.acks.fetch_add(1, Ordering::SeqCst);
    }
}

fn rv_of(object: &impl ResourceExt) -> u64 {
    object
        .resource_version()
        .and_then(|rv| rv.parse().ok())
        .expect("an integer resourceVersion")
}

fn stored_version(cm: &ConfigMap) -> Option<u64> {
    cm.data.as_ref()?.get("version")?.parse().ok()
}

fn config_map(name: &str, writer: usize, version: u64) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"writer": writer.to_string()}},
        "data": {"version": version.to_string(), "writer": writer.to_string()},
    }))
    .unwrap()
}

/// Creates ConfigMaps `w<writer>-<n>` and, every third write, updates one it created earlier, until told to
/// stop. Failed writes (the server is down) are counted and skipped: their outcome is unknown.
async fn write_until_stopped(client: Client, writer: usize, progress: Arc<Progress>) {
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    // Names this writer created with an acknowledgement, and the last version it attempted for each.
    let mut created: Vec<String> = Vec::new();
    let mut attempted: BTreeMap<String, u64> = BTreeMap::new();
    let mut n = 0u64;
    while !progress.stop.load(Ordering::SeqCst) {
        n += 1;
        let after_restart = progress.epoch.load(Ordering::SeqCst) == 1;
        let result = if n.is_multiple_of(3) && !created.is_empty() {
            let name = created[(n as usize / 3) % created.len()].clone();
            let version = attempted[&name] + 1;
            attempted.insert(name.clone(), version);
            let patch = Patch::Merge(json!({"data": {"version": version.to_string()}}));
            cms.patch(&name, &PatchParams::default(), &patch)
                .await
                .map(|cm| (name, version, cm))
        } else {
            let name = format!("w{writer}-{n}");
            attempted.insert(name.clone(), 0);
            let result = cms
                .create(&PostParams::default(), &config_map(&name, writer, 0))
                .await;
            if result.is_ok() {
                created.push(name.clone());
            }
            result.map(|cm| (name, 0, cm))
        };
        match result {
            Ok((name, version, stored)) => progress.record(&name, version, &stored, after_restart),
            Err(_) => {
                progress.failures.fetch_add(1, Ordering::SeqCst);
                // Back off a little so a down server is not hammered; this does not synchronise anything.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Waits until `counter` reaches `target`, failing the test after DEADLINE.
async fn reach(what: &str, counter: &AtomicUsize, target: usize) {
    let wait = async {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while counter.load(Ordering::SeqCst) < target {
            tick.tick().await;
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "timed out after {DEADLINE:?} waiting for {what} ({} of {target})",
                counter.load(Ordering::SeqCst)
            )
        });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_kill_9_and_resource_versions_keep_increasing() {
    let server = Server::start();
    let client = server.client().await;
    let progress = Arc::new(Progress::default());
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(write_until_stopped(client.clone(), w, progress.clone())))
        .collect();

    reach(
        "acknowledged writes before the kill",
        &progress.acks,
        ACKED_BEFORE_KILL,
    )
    .await;
    // Server::kill and restart block (they wait for the process); the writers go on meanwhile.
    let server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.kill();
        server
    })
    .await
    .unwrap();
    let before_kill = progress.acked.lock().unwrap().clone();
    let acks_at_kill = progress.acks.load(Ordering::SeqCst);
    let failures_at_kill = progress.failures.load(Ordering::SeqCst);
    reach(
        "writes failing while the server is down",
        &progress.failures,
        failures_at_kill + FAILED_WHILE_DOWN,
    )
    .await;

    let server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.restart();
        server
    })
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let restarted_at = cms
        .list(&ListParams::default())
        .await
        .expect("listing after the restart");
    progress.epoch.store(1, Ordering::SeqCst);
    let acks_at_restart = progress.acks.load(Ordering::SeqCst);
    reach(
        "acknowledged writes after the restart",
        &progress.acks,
        acks_at_restart + ACKED_AFTER_RESTART,
    )
    .await;
    progress.stop.store(true, Ordering::SeqCst);
    for writer in writers {
        tokio::time::timeout(DEADLINE, writer)
            .await
            .expect("a writer to stop")
            .expect("a writer not to panic");
    }

    let acked = progress.acked.lock().unwrap().clone();
    eprintln!(
        "{WRITERS} writers: {acks_at_kill} acknowledged before the kill, {} failed while down, {} acknowledged \
         in all; {} ConfigMaps acknowledged",
        progress.failures.load(Ordering::SeqCst) - failures_at_kill,
        progress.acks.load(Ordering::SeqCst),
        acked.len(),
    );

    // Nothing acknowledged before the kill is lost, and the restarted server's resourceVersion covers it.
    let highest_before_kill = before_kill
        .values()
        .map(|a| a.rv)
        .max()
        .expect("writes before the kill");
    let restarted_rv: u64 = restarted_at
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        restarted_rv >= highest_before_kill,
        "after the restart the resourceVersion is {restarted_rv}, below the acknowledged {highest_before_kill}"
    );
    let stored: BTreeMap<String, ConfigMap> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|cm| (cm.name_any(), cm))
        .collect();
    let mut lost = Vec::new();
    for (name, ack) in &acked {
        let Some(cm) = stored.get(name) else {
            lost.push(format!(
                "{name}: acknowledged version {} at rv {} is missing",
                ack.version, ack.rv
            ));
            continue;
        };
        let (version, rv) = (stored_version(cm).unwrap_or_default(), rv_of(cm));
        // A later write to the same name may have reached the disk without its acknowledgement reaching us.
        let intact =
            (version == ack.version && rv == ack.rv) || (version > ack.version && rv > ack.rv);
        if !intact {
            lost.push(format!(
                "{name}: acknowledged version {} at rv {}, stored version {version} at rv {rv}",
                ack.version, ack.rv
            ));
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost or rolled back:\n{}",
        lost.len(),
        lost.join("\n")
    );

    // Writes sent after the restart got resourceVersions above everything acknowledged before the kill.
    let after: Vec<u64> = acked
        .values()
        .filter(|a| a.after_restart)
        .map(|a| a.rv)
        .collect();
    assert!(
        !after.is_empty(),
        "writes were acknowledged after the restart"
    );
    assert!(
        after
            .iter()
            .all(|rv| *rv > highest_before_kill && *rv > restarted_rv),
        "resourceVersions after the restart ({:?}) do not all exceed {highest_before_kill}/{restarted_rv}",
        after.iter().min()
    );
    drop(server);
}
