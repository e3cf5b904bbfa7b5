//! Benchmarks the Stack controller (issue 7): apply → Ready of one Stack at a time with the real PostgreSQL and
//! Redis images (the app a busybox httpd), many Stacks applied at once → all Ready, the controller's memory
//! idle and with those Stacks, and its reconciles per second while nothing changes. The controller runs as a
//! process of its own (`berth controller`) beside `berth up --disable-controller`, so that its memory is its
//! own. The peer, run side by side on the same berth, is the very objects the controller made for each Stack
//! (Secret, claims, Services, Pods; owner references and bindings taken off) applied directly: Stack ÷ bare
//! objects is what the controller adds (ordering, reconcile latency, status). Removes everything it created.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use berth_e2e::Server;
use berth_e2e::bench::{
    BerthUp, Memory, ensure_root, load_average, ms, percentile, print_memory, ratio, release_berth,
    wait_no_shims, wait_node_ready,
};
use berth_e2e::demo::Images as DemoImages;
use berth_e2e::network::TestNetwork;
use berth_e2e::registry::Registry;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::serde::Serialize;
use k8s_openapi::serde::de::DeserializeOwned;
use k8s_openapi::serde_json::{self, Value, json};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;

/// The label the controller puts on everything a Stack owns; its value is the Stack's name.
const LABEL_STACK: &str = "berth.dev/stack";
const NAMESPACE: &str = "default";
/// One Stack (or its bare objects) from apply to Ready, images present; PostgreSQL's initdb is most of it.
const ROUND_DEADLINE: Duration = Duration::from_secs(300);
/// Many Stacks at once, or their removal.
const MANY_DEADLINE: Duration = Duration::from_secs(1200);
/// Pods per node the bench plans for: the agent's node offers 110, as the kubelet's default maxPods.
const PODS_PER_NODE: usize = 100;
/// Creates in flight when many objects are applied at once.
const IN_FLIGHT: usize = 16;
/// The app: busybox httpd serving one page on this port, Ready when it answers.
const APP_PORT: u16 = 8080;

#[derive(Parser)]
#[command(
    about = "Stack controller: apply → Ready, many Stacks at once, memory, reconciles when idle"
)]
struct Args {
    /// The berth binary to run (default: the workspace's release build).
    #[arg(long, env = "BERTH_BIN")]
    berth_bin: Option<PathBuf>,
    /// Stacks applied one at a time with the real PostgreSQL and Redis images (each alternates with its bare
    /// objects, and both are deleted before the next).
    #[arg(long, default_value_t = 10)]
    sequential: usize,
    /// Stacks applied at once, with stand-in database and Redis images (busybox; see the output).
    #[arg(long, default_value_t = 200)]
    at_once: usize,
    /// Seconds to count reconciles with every Stack Ready and nothing changing.
    #[arg(long, default_value_t = 60)]
    quiet_secs: u64,
}

/// What the bench measured.
struct Figures {
    images: String,
    /// Apply → Stack Ready, one at a time, sorted.
    stack_one: Vec<Duration>,
    /// The same objects applied without the Stack → all their Pods Ready, sorted.
    bare_one: Vec<Duration>,
    /// Apply of the first of many Stacks → the last one Ready.
    stack_many: Duration,
    /// Their bare objects applied at once → the last Pod Ready.
    bare_many: Duration,
    /// Reconciles the controller started while the many Stacks rolled out.
    rollout_reconciles: f64,
    /// Deleting the many Stacks → all their Pods gone.
    delete_many: Duration,
    nodes: usize,
    pods: usize,
    /// Reconciles counted over the quiet window, and the window.
    quiet_reconciles: f64,
    quiet: Duration,
    controller_idle: Memory,
    controller_loaded: Memory,
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
    let run = format!("{:x}", std::process::id());

    println!("Stack controller benchmark (issue 7)");
    println!("- berth: {}", bin.display());
    println!("- load average at start: {}", load_average());
    let registry = Registry::start();
    let images = Images::build(&registry)?;
    let demo = DemoRegistry::start();
    println!(
        "- images: app {} (busybox httpd on :{APP_PORT}); one at a time: {} and {} (Debian-built, \
         scripts/images.sh); at once: stand-ins {} and {}",
        images.app, demo.postgres, demo.redis, images.postgres, images.redis
    );
    println!(
        "  (the stand-ins are busybox httpd on 5432 / 6379 with `pg_isready` / `redis-cli` scripts that pass once \
         the port listens: the at-once figures measure the controller and the agents, not PostgreSQL or Redis)"
    );

    let figures = bench(&bin, &run, &images, &demo, &args).await?;
    println!("- load average at end: {}", load_average());
    print_table(&figures, &args);
    Ok(())
}

async fn bench(
    bin: &Path,
    run: &str,
    images: &Images,
    demo: &DemoRegistry,
    args: &Args,
) -> Result<Figures> {
    let node = format!("bstk-{run}");
    let up = BerthUp::start(bin, &node, &["--disable-controller"]);
    let data_dir = up.server.data_dir.path().to_owned();
    let client = up.server.client().await;
    wait_node_ready(&Api::all(client.clone()), &node).await?;
    install_crd(&client).await?;
    let controller = ControllerProcess::start(bin, &up.server)?;
    controller.wait_ready().await?;
    let mut controller_idle = Memory::default();
    controller_idle.add(controller.pid());
    print_memory("controller idle (no Stacks)", controller_idle);

    let cluster = Cluster::new(client.clone());
    // The first Stack pulls the images and is not counted.
    let warmup = format!("bstk-{run}-warm");
    cluster
        .stack_round(&warmup, &stack_spec(images, &demo.postgres, &demo.redis))
        .await
        .context("the warm-up Stack")?;
    wait_no_shims(&data_dir).await?;

    let mut stack_one = Vec::new();
    let mut bare_one = Vec::new();
    for i in 0..args.sequential {
        let name = format!("bstk-{run}-{i}");
        let (took, objects) = cluster
            .stack_round(&name, &stack_spec(images, &demo.postgres, &demo.redis))
            .await?;
        wait_no_shims(&data_dir).await?;
        let bare = cluster.bare_round(&objects).await?;
        wait_no_shims(&data_dir).await?;
        println!(
            "- one at a time {i}: Stack {:.0} ms, bare objects {:.0} ms (load {})",
            ms(took),
            ms(bare),
            load_average()
        );
        stack_one.push(took);
        bare_one.push(bare);
    }
    stack_one.sort_unstable();
    bare_one.sort_unstable();

    // Many Stacks need more Pods than one node takes: agents of their own join as further nodes.
    let pods = 3 * args.at_once;
    let nodes = pods.div_ceil(PODS_PER_NODE).max(1);
    let mut agents = Vec::new();
    for i in 1..nodes {
        agents.push(AgentProcess::start(
            bin,
            &up.server,
            &format!("bstk-{run}-n{i}"),
        )?);
    }
    let mut names = vec![node.clone()];
    for agent in &agents {
        wait_node_ready(&Api::all(client.clone()), &agent.node).await?;
        names.push(agent.node.clone());
    }
    cluster.warm_nodes(&names, images, run).await?;
    println!(
        "- {nodes} nodes (berth up's agent and {} `berth agent`s); load average: {}",
        agents.len(),
        load_average()
    );

    let prefix = format!("bstk-{run}-m");
    let many: Vec<String> = (0..args.at_once).map(|i| format!("{prefix}{i}")).collect();
    let before = controller.reconciles().await?;
    let stack_many = cluster
        .stacks_at_once(&many, &stack_spec(images, &images.postgres, &images.redis))
        .await?;
    let rollout_reconciles = controller.reconciles().await? - before;
    println!(
        "- {} Stacks at once: all Ready in {:.2} s, {rollout_reconciles} reconciles; load average: {}",
        args.at_once,
        stack_many.as_secs_f64(),
        load_average()
    );

    let start = controller.reconciles().await?;
    // A measuring window, not a wait for a condition: the counter is read at both ends.
    tokio::time::sleep(Duration::from_secs(args.quiet_secs)).await;
    let quiet_reconciles = controller.reconciles().await? - start;
    let errors = controller
        .metric_lines("berth_controller_reconcile_errors_total")
        .await?;
    println!(
        "- quiet window {} s: {quiet_reconciles} reconciles; errors so far: {}",
        args.quiet_secs,
        if errors.is_empty() {
            "none".to_owned()
        } else {
            errors.join(", ")
        }
    );
    let mut controller_loaded = Memory::default();
    controller_loaded.add(controller.pid());
    print_memory(
        &format!("controller with {} Stacks Ready", args.at_once),
        controller_loaded,
    );

    let objects = cluster
        .capture(|stack| stack.starts_with(prefix.as_str()))
        .await?;
    ensure!(
        objects.pods.len() == pods,
        "found {} Pods of the {} Stacks: expected {pods}",
        objects.pods.len(),
        args.at_once
    );
    let delete_many = cluster.delete_stacks(&many).await?;
    println!(
        "- {} Stacks deleted: all their Pods gone in {:.2} s",
        args.at_once,
        delete_many.as_secs_f64()
    );
    let bare_many = cluster.bare_at_once(&objects).await?;
    println!(
        "- their bare objects at once: all {pods} Pods Ready in {:.2} s; load average: {}",
        bare_many.as_secs_f64(),
        load_average()
    );
    cluster.delete_objects(&objects, MANY_DEADLINE).await?;

    // The watches go before the API server does.
    drop(cluster);
    drop(agents);
    drop(controller);
    drop(up);
    Ok(Figures {
        images: format!("{} + {} + {}", images.app, demo.postgres, demo.redis),
        stack_one,
        bare_one,
        stack_many,
        bare_many,
        rollout_reconciles,
        delete_many,
        nodes,
        pods,
        quiet_reconciles,
        quiet: Duration::from_secs(args.quiet_secs),
        controller_idle,
        controller_loaded,
    })
}

/// A Stack's spec: the app is busybox httpd, Ready when it serves its page; database and Redis as given.
/// `Delete`, so that its claims and Secret go with it and the next round starts clean.
fn stack_spec(images: &Images, postgres: &str, redis: &str) -> Value {
    json!({
        "app": {
            "image": images.app,
            "ports": [{"name": "http", "containerPort": APP_PORT}],
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 2},
        },
        "database": {"image": postgres, "storage": {"size": "1Gi"}},
        "redis": {"image": redis},
        "deletionPolicy": "Delete",
    })
}

async fn install_crd(client: &Client) -> Result<()> {
    let path = Server::repo_root().join("crds/berth.dev_stacks.yaml");
    let crd: CustomResourceDefinition = serde_yaml::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd)
        .await
        .context("creating the Stack CRD")?;
    tokio::time::timeout(
        ROUND_DEADLINE,
        await_condition(crds, &crd.name_any(), conditions::is_crd_established()),
    )
    .await
    .context("the Stack CRD was not Established in time")?
    .context("watching the Stack CRD")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// images

/// The bench's busybox images in the loopback registry: the app, and the stand-ins for PostgreSQL and Redis.
struct Images {
    app: String,
    postgres: String,
    redis: String,
}

impl Images {
    fn build(registry: &Registry) -> Result<Images> {
        let base = registry.push_busybox("bench/busybox:1");
        let dir = tempfile::Builder::new()
            .prefix("berth-bench-stacks-images-")
            .tempdir()?;
        let serve = |port: u16, root: &str| {
            // PID 1 ignores SIGTERM unless it handles it: the shell does, so a Pod stops at once.
            vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                format!("trap 'exit 0' TERM; /bin/busybox httpd -f -p {port} -h {root} & wait"),
            ]
        };
        // A port listens when /proc/net/tcp{,6} has it with no remote address in state 0A (LISTEN).
        let listening = |port: u16| {
            format!(
                "#!/bin/sh\ncat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -q ':{port:04X} [0-9A-F]*:0000 0A'\n"
            )
        };
        let variant = |name: &str, files: &[(&str, String)], cmd: Vec<String>| {
            push_variant(registry, &base, dir.path(), name, files, &cmd)
        };
        Ok(Images {
            app: variant(
                "bench/httpd:1",
                &[("www/index.html", "berth bench\n".to_owned())],
                serve(APP_PORT, "/www"),
            )?,
            postgres: variant(
                "bench/postgres-standin:1",
                &[("bin/pg_isready", listening(5432))],
                serve(5432, "/bin"),
            )?,
            redis: variant(
                "bench/redis-standin:1",
                &[("bin/redis-cli", listening(6379))],
                serve(6379, "/bin"),
            )?,
        })
    }
}

/// `base` with `files` (executable, relative to /) added as a layer and `cmd` as its command, pushed as
/// `<registry>/<name>`; returns that reference.
fn push_variant(
    registry: &Registry,
    base: &str,
    work: &Path,
    name: &str,
    files: &[(&str, String)],
    cmd: &[String],
) -> Result<String> {
    let dir = work.join(name.replace(['/', ':'], "_"));
    std::fs::create_dir_all(&dir)?;
    let layout = dir.join("layout");
    let image = format!("{}:latest", layout.display());
    tool(Command::new("skopeo").args([
        "copy",
        "--insecure-policy",
        "--src-tls-verify=false",
        &format!("docker://{base}"),
        &format!("oci:{image}"),
    ]))?;
    let stage = dir.join("stage");
    for (path, content) in files {
        let file = stage.join(path);
        std::fs::create_dir_all(file.parent().context("a file has a directory")?)?;
        std::fs::write(&file, content)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))?;
    }
    for entry in std::fs::read_dir(&stage)? {
        let top = entry?.file_name();
        let target = format!("/{}", top.to_string_lossy());
        tool(
            Command::new("umoci")
                .args(["insert", "--image", &image])
                .arg(stage.join(&top))
                .arg(&target),
        )?;
    }
    let mut config = Command::new("umoci");
    config.args(["config", "--image", &image, "--config.env", "PATH=/bin"]);
    for arg in cmd {
        config.args(["--config.cmd", arg]);
    }
    tool(&mut config)?;
    let reference = format!("{}/{name}", registry.host());
    tool(Command::new("skopeo").args([
        "copy",
        "--insecure-policy",
        "--dest-tls-verify=false",
        &format!("oci:{image}"),
        &format!("docker://{reference}"),
    ]))?;
    Ok(reference)
}

/// Runs a tool; its output on failure.
fn tool(command: &mut Command) -> Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {command:?}"))?;
    ensure!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The Debian-built PostgreSQL and Redis images (`scripts/images.sh`, cached under .cache/images) in a
/// registry of the bench's own on a free loopback port (the demo tests'); stopped on drop.
struct DemoRegistry {
    postgres: String,
    redis: String,
    _images: DemoImages,
}

impl DemoRegistry {
    fn start() -> DemoRegistry {
        let images = DemoImages::start();
        DemoRegistry {
            postgres: format!("{}/berth/postgres:15", images.addr),
            redis: format!("{}/berth/redis:7", images.addr),
            _images: images,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// processes

/// `berth controller` against the `berth up`'s kubeconfig, serving its metrics on a free loopback port;
/// killed on drop. Its log goes to `controller.log` in the data directory.
struct ControllerProcess {
    child: Child,
    metrics: String,
}

impl ControllerProcess {
    fn start(bin: &Path, server: &Server) -> Result<ControllerProcess> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let metrics = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(server.data_dir.path().join("controller.log"))?;
        let child = Command::new(bin)
            .arg("controller")
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            .args(["--metrics-addr", &metrics])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting berth controller")?;
        Ok(ControllerProcess { child, metrics })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `curl` of one of its endpoints: the body, or None when it does not answer 2xx.
    fn get(&self, path: &str) -> Option<String> {
        let url = format!("http://{}{path}", self.metrics);
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "5", &url])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until `/readyz` answers: the CRD is there and the caches are synced.
    async fn wait_ready(&self) -> Result<()> {
        let start = Instant::now();
        while self.get("/readyz").is_none() {
            ensure!(
                start.elapsed() < ROUND_DEADLINE,
                "berth controller was not ready on {} within {ROUND_DEADLINE:?}",
                self.metrics
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// The lines of `/metrics` that start with `name`.
    async fn metric_lines(&self, name: &str) -> Result<Vec<String>> {
        let text = self
            .get("/metrics")
            .with_context(|| format!("reading http://{}/metrics", self.metrics))?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(name))
            .map(str::to_owned)
            .collect())
    }

    /// `berth_controller_reconciles_total`.
    async fn reconciles(&self) -> Result<f64> {
        let lines = self
            .metric_lines("berth_controller_reconciles_total ")
            .await?;
        let value = lines
            .first()
            .and_then(|l| l.split_whitespace().nth(1))
            .context("no berth_controller_reconciles_total in /metrics")?;
        Ok(value.parse()?)
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `berth agent` as one more node of the `berth up`, with its own data directory, bridge and /24; on drop
/// it is killed and `berth down` removes its containers and network.
struct AgentProcess {
    child: Child,
    node: String,
    bin: PathBuf,
    data_dir: tempfile::TempDir,
}

impl AgentProcess {
    fn start(bin: &Path, server: &Server, node: &str) -> Result<AgentProcess> {
        let data_dir = tempfile::Builder::new()
            .prefix("berth-bench-agent-")
            .tempdir()?;
        let network = TestNetwork::pick();
        let log = std::fs::File::create(data_dir.path().join("agent.log"))?;
        let child = Command::new(bin)
            .arg("agent")
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--node-name", node])
            .args(network.flags())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting berth agent")?;
        Ok(AgentProcess {
            child,
            node: node.to_owned(),
            bin: bin.to_owned(),
            data_dir,
        })
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let down = Command::new(&self.bin)
            .arg("down")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !down.is_ok_and(|s| s.success()) {
            eprintln!(
                "berth down --data-dir {} failed: containers may be left",
                self.data_dir.path().display()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// the cluster

/// Which objects of a kind exist, and when each was first seen Ready (as its watch delivered it), by uid:
/// the bare objects reuse the names of the Stack's.
#[derive(Default, Clone)]
struct Tracker {
    present: HashSet<String>,
    ready: HashMap<String, Instant>,
}

/// Watches `api`, keeping a [`Tracker`] up to date until the returned task is aborted.
fn track<K>(
    api: Api<K>,
    ready: fn(&K) -> bool,
) -> (watch::Receiver<Tracker>, tokio::task::JoinHandle<()>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (tx, rx) = watch::channel(Tracker::default());
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .for_each(move |event| {
            match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    let uid = o.uid().unwrap_or_default();
                    let is_ready = ready(&o);
                    tx.send_modify(|t| {
                        t.present.insert(uid.clone());
                        if is_ready {
                            t.ready.entry(uid).or_insert_with(Instant::now);
                        }
                    });
                }
                Ok(watcher::Event::Delete(o)) => {
                    let uid = o.uid().unwrap_or_default();
                    tx.send_modify(|t| {
                        t.present.remove(&uid);
                        t.ready.remove(&uid);
                    });
                }
                Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
                // The backoff retries the watch.
                Err(e) => eprintln!("watch: {e}"),
            }
            std::future::ready(())
        });
    (rx, tokio::spawn(stream))
}

/// Waits until every object of `uids` has been seen Ready; returns `start` → the last of them Ready.
async fn wait_all_ready(
    rx: &watch::Receiver<Tracker>,
    uids: &[String],
    what: &str,
    deadline: Duration,
    start: Instant,
) -> Result<Duration> {
    let mut rx = rx.clone();
    let seen = match tokio::time::timeout(
        deadline,
        rx.wait_for(|t| uids.iter().all(|u| t.ready.contains_key(u))),
    )
    .await
    {
        Ok(Ok(t)) => t.clone(),
        Ok(Err(_)) => bail!("the watch ended while waiting for {what}"),
        Err(_) => bail!("timed out after {deadline:?} waiting for {what}"),
    };
    Ok(uids
        .iter()
        .filter_map(|u| seen.ready.get(u))
        .max()
        .map_or(Duration::ZERO, |last| last.duration_since(start)))
}

fn condition_true(conditions: Option<&Value>, type_: &str) -> bool {
    conditions.and_then(Value::as_array).is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    })
}

fn stack_ready(stack: &DynamicObject) -> bool {
    condition_true(stack.data.pointer("/status/conditions"), "Ready")
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The objects the controller made for Stacks, as they would be applied without them: name, labels and
/// (but for claims, which the provisioner annotates) annotations kept; owner references, bindings (a Pod's
/// node, a claim's volume) and status taken off.
#[derive(Default)]
struct Objects {
    secrets: Vec<Secret>,
    claims: Vec<PersistentVolumeClaim>,
    services: Vec<Service>,
    pods: Vec<Pod>,
}

fn bare_meta(meta: &ObjectMeta, annotations: bool) -> ObjectMeta {
    ObjectMeta {
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        labels: meta.labels.clone(),
        annotations: annotations.then(|| meta.annotations.clone()).flatten(),
        ..ObjectMeta::default()
    }
}

struct Cluster {
    client: Client,
    stacks: Api<DynamicObject>,
    stacks_seen: watch::Receiver<Tracker>,
    pods_seen: watch::Receiver<Tracker>,
    watches: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for watch in &self.watches {
            watch.abort();
        }
    }
}

impl Cluster {
    fn new(client: Client) -> Cluster {
        let resource =
            ApiResource::from_gvk(&GroupVersionKind::gvk("berth.dev", "v1alpha1", "Stack"));
        let stacks: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &resource);
        let (stacks_seen, stacks_watch) = track(stacks.clone(), stack_ready);
        let (pods_seen, pods_watch) =
            track(Api::<Pod>::namespaced(client.clone(), NAMESPACE), pod_ready);
        Cluster {
            client,
            stacks,
            stacks_seen,
            pods_seen,
            watches: vec![stacks_watch, pods_watch],
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    fn stack(&self, name: &str, spec: &Value) -> DynamicObject {
        let mut stack = DynamicObject::new(
            name,
            &ApiResource::from_gvk(&GroupVersionKind::gvk("berth.dev", "v1alpha1", "Stack")),
        )
        .within(NAMESPACE);
        stack.data = json!({ "spec": spec });
        stack
    }

    /// Creates a Stack and waits until it is Ready; returns apply → Ready and the objects it then owns. The
    /// Stack is deleted, and everything it owned is gone, before this returns.
    async fn stack_round(&self, name: &str, spec: &Value) -> Result<(Duration, Objects)> {
        let start = Instant::now();
        let uid = self
            .stacks
            .create(&PostParams::default(), &self.stack(name, spec))
            .await
            .with_context(|| format!("creating Stack {name}"))?
            .uid()
            .unwrap_or_default();
        let took = wait_all_ready(
            &self.stacks_seen,
            &[uid],
            &format!("Stack {name} Ready"),
            ROUND_DEADLINE,
            start,
        )
        .await?;
        let objects = self.capture(|stack| stack == name).await?;
        self.delete_stacks(&[name.to_owned()]).await?;
        Ok((took, objects))
    }

    /// Applies the objects and waits until all their Pods are Ready; returns apply → the last Pod Ready. The
    /// objects are deleted, and gone, before this returns.
    async fn bare_round(&self, objects: &Objects) -> Result<Duration> {
        let took = self.bare_at_once(objects).await?;
        self.delete_objects(objects, ROUND_DEADLINE).await?;
        Ok(took)
    }

    async fn bare_at_once(&self, objects: &Objects) -> Result<Duration> {
        let start = Instant::now();
        create_all(&self.api(), &objects.secrets).await?;
        create_all(&self.api(), &objects.claims).await?;
        create_all(&self.api(), &objects.services).await?;
        let uids = create_all(&self.api(), &objects.pods).await?;
        wait_all_ready(
            &self.pods_seen,
            &uids,
            &format!("{} bare Pods Ready", uids.len()),
            MANY_DEADLINE,
            start,
        )
        .await
    }

    /// Creates the Stacks (several in flight) and waits until all are Ready; returns the first create → the
    /// last Ready.
    async fn stacks_at_once(&self, names: &[String], spec: &Value) -> Result<Duration> {
        let stacks: Vec<DynamicObject> = names.iter().map(|n| self.stack(n, spec)).collect();
        let start = Instant::now();
        let uids = create_all(&self.stacks, &stacks).await?;
        wait_all_ready(
            &self.stacks_seen,
            &uids,
            &format!("{} Stacks Ready", names.len()),
            MANY_DEADLINE,
            start,
        )
        .await
    }

    /// The objects of the Stacks whose name passes `of`, as they would be applied without them.
    async fn capture(&self, of: impl Fn(&str) -> bool) -> Result<Objects> {
        let owned = |meta: &ObjectMeta| {
            meta.labels
                .as_ref()
                .and_then(|l| l.get(LABEL_STACK))
                .is_some_and(|s| of(s))
        };
        let selector = ListParams::default().labels(LABEL_STACK);
        let mut objects = Objects::default();
        for secret in self.api::<Secret>().list(&selector).await? {
            if owned(&secret.metadata) {
                objects.secrets.push(Secret {
                    metadata: bare_meta(&secret.metadata, true),
                    ..secret
                });
            }
        }
        for claim in self.api::<PersistentVolumeClaim>().list(&selector).await? {
            if owned(&claim.metadata) {
                let mut spec = claim.spec.unwrap_or_default();
                spec.volume_name = None;
                objects.claims.push(PersistentVolumeClaim {
                    metadata: bare_meta(&claim.metadata, false),
                    spec: Some(spec),
                    status: None,
                });
            }
        }
        for service in self.api::<Service>().list(&selector).await? {
            if owned(&service.metadata) {
                let mut spec = service.spec.unwrap_or_default();
                if spec.cluster_ip.as_deref() != Some("None") {
                    spec.cluster_ip = None;
                    spec.cluster_ips = None;
                }
                objects.services.push(Service {
                    metadata: bare_meta(&service.metadata, true),
                    spec: Some(spec),
                    status: None,
                });
            }
        }
        for pod in self.api::<Pod>().list(&selector).await? {
            if owned(&pod.metadata) {
                let mut spec = pod.spec.unwrap_or_default();
                spec.node_name = None;
                objects.pods.push(Pod {
                    metadata: bare_meta(&pod.metadata, true),
                    spec: Some(spec),
                    status: None,
                });
            }
        }
        ensure!(!objects.pods.is_empty(), "no Pods found for the Stacks");
        Ok(objects)
    }

    /// Deletes the Stacks and waits until they, and every Pod and claim they owned, are gone; returns the
    /// first delete → all gone.
    async fn delete_stacks(&self, names: &[String]) -> Result<Duration> {
        let start = Instant::now();
        futures::stream::iter(
            names.iter().map(|name| async move {
                self.stacks.delete(name, &DeleteParams::default()).await
            }),
        )
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<_>>()
        .await
        .context("deleting Stacks")?;
        let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
        let owned_by = move |meta: &ObjectMeta| {
            meta.labels
                .as_ref()
                .and_then(|l| l.get(LABEL_STACK))
                .is_some_and(|s| wanted.contains(s.as_str()))
        };
        self.wait_gone("the deleted Stacks' objects", MANY_DEADLINE, |objects| {
            objects.stacks.iter().any(|s| names.contains(s))
                || objects.pods.iter().any(|p| owned_by(&p.metadata))
                || objects.claims.iter().any(|c| owned_by(&c.metadata))
        })
        .await?;
        Ok(start.elapsed())
    }

    /// Deletes the objects and waits until their Pods and claims are gone.
    async fn delete_objects(&self, objects: &Objects, deadline: Duration) -> Result<()> {
        delete_all(&self.api::<Pod>(), &objects.pods).await?;
        delete_all(&self.api::<Service>(), &objects.services).await?;
        delete_all(&self.api::<PersistentVolumeClaim>(), &objects.claims).await?;
        delete_all(&self.api::<Secret>(), &objects.secrets).await?;
        let pods: HashSet<String> = objects.pods.iter().map(ResourceExt::name_any).collect();
        let claims: HashSet<String> = objects.claims.iter().map(ResourceExt::name_any).collect();
        self.wait_gone("the bare objects", deadline, |left| {
            left.pods.iter().any(|p| pods.contains(&p.name_any()))
                || left.claims.iter().any(|c| claims.contains(&c.name_any()))
        })
        .await
    }

    /// Polls the namespace's Stacks, Pods and claims until `left` is false of them.
    async fn wait_gone(
        &self,
        what: &str,
        deadline: Duration,
        left: impl Fn(&Remaining) -> bool,
    ) -> Result<()> {
        let start = Instant::now();
        loop {
            let remaining = Remaining {
                stacks: self
                    .stacks
                    .list(&ListParams::default())
                    .await?
                    .into_iter()
                    .map(|s| s.name_any())
                    .collect(),
                pods: self.api::<Pod>().list(&ListParams::default()).await?.items,
                claims: self
                    .api::<PersistentVolumeClaim>()
                    .list(&ListParams::default())
                    .await?
                    .items,
            };
            if !left(&remaining) {
                return Ok(());
            }
            ensure!(
                start.elapsed() < deadline,
                "{what} were not gone within {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Pulls the images on every node before anything is timed: a Pod bound to each node runs all three.
    async fn warm_nodes(&self, nodes: &[String], images: &Images, run: &str) -> Result<()> {
        let pods: Vec<Pod> = nodes
            .iter()
            .map(|node| {
                let containers: Vec<Value> = [&images.app, &images.postgres, &images.redis]
                    .iter()
                    .enumerate()
                    .map(|(i, image)| {
                        json!({"name": format!("c{i}"), "image": image, "command": ["/bin/sleep", "3600"]})
                    })
                    .collect();
                serde_json::from_value(json!({
                    "metadata": {"name": format!("bstk-{run}-warm-{node}")},
                    "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, "containers": containers},
                }))
            })
            .collect::<Result<_, _>>()?;
        let objects = Objects {
            pods,
            ..Objects::default()
        };
        self.bare_at_once(&objects)
            .await
            .context("pulling the stand-in images on every node")?;
        self.delete_objects(&objects, ROUND_DEADLINE).await
    }
}

/// What a namespace still holds.
struct Remaining {
    stacks: Vec<String>,
    pods: Vec<Pod>,
    claims: Vec<PersistentVolumeClaim>,
}

/// Creates the objects (several in flight); returns their uids.
async fn create_all<K>(api: &Api<K>, objects: &[K]) -> Result<Vec<String>>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    futures::stream::iter(
        objects
            .iter()
            .map(|o| async move { api.create(&PostParams::default(), o).await }),
    )
    .buffer_unordered(IN_FLIGHT)
    .map_ok(|o| o.uid().unwrap_or_default())
    .try_collect()
    .await
    .with_context(|| {
        let first = objects
            .first()
            .map(ResourceExt::name_any)
            .unwrap_or_default();
        format!("creating {} objects ({first}…)", objects.len())
    })
}

async fn delete_all<K>(api: &Api<K>, objects: &[K]) -> Result<()>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    futures::stream::iter(objects.iter().map(|o| async move {
        match api.delete(&o.name_any(), &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }))
    .buffer_unordered(IN_FLIGHT)
    .try_collect::<Vec<_>>()
    .await
    .context("deleting the bare objects")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// report

fn print_table(f: &Figures, args: &Args) {
    println!();
    println!("| measure | Stack | bare objects | Stack ÷ bare |");
    println!("| --- | ---: | ---: | ---: |");
    for (label, p) in [("median", 0.5), ("p90", 0.9)] {
        let (s, b) = (
            ms(percentile(&f.stack_one, p)),
            ms(percentile(&f.bare_one, p)),
        );
        println!(
            "| apply → Ready, one at a time, {label} of {} (ms; real PostgreSQL + Redis) | {s:.0} | {b:.0} | {} |",
            f.stack_one.len(),
            ratio(s, b)
        );
    }
    let (s, b) = (f.stack_many.as_secs_f64(), f.bare_many.as_secs_f64());
    println!(
        "| {} at once → all Ready (s; stand-ins, {} Pods on {} nodes) | {s:.2} | {b:.2} | {} |",
        args.at_once,
        f.pods,
        f.nodes,
        ratio(s, b)
    );
    println!();
    println!("| measure | value |");
    println!("| --- | ---: |");
    println!(
        "| reconciles while {} Stacks rolled out (per Stack) | {:.0} ({:.1}) |",
        args.at_once,
        f.rollout_reconciles,
        f.rollout_reconciles / args.at_once as f64
    );
    println!(
        "| reconciles/s with {} Stacks Ready, nothing changing ({} s window) | {:.3} |",
        args.at_once,
        f.quiet.as_secs(),
        f.quiet_reconciles / f.quiet.as_secs_f64()
    );
    println!(
        "| {} Stacks deleted → all their Pods and claims gone (s) | {:.2} |",
        args.at_once,
        f.delete_many.as_secs_f64()
    );
    for (label, m) in [
        ("controller idle, no Stacks", f.controller_idle),
        (
            &format!("controller with {} Stacks Ready", args.at_once) as &str,
            f.controller_loaded,
        ),
    ] {
        println!(
            "| {label}: RSS / PSS (MiB) | {:.1} / {:.1} |",
            Memory::mib(m.rss_kib),
            Memory::mib(m.pss_kib)
        );
    }
    let (rss, pss) = f
        .controller_loaded
        .per_pod_kib(&f.controller_idle, args.at_once);
    println!("| controller per Stack: RSS / PSS (KiB) | {rss:.0} / {pss:.0} |");
    println!();
    println!(
        "One at a time: {}. Stack = create the Stack → its Ready condition True (the controller orders database and \
         Redis before the app). Bare = the same Secret, claims, Services and Pods the controller made for it, \
         created directly → all Pods Ready (no ordering: the three start together). Ratios above 1 are the \
         controller's cost.",
        f.images
    );
}
