//! Benchmarks the demo stack (config/samples/stack.yaml: the Flask app, PostgreSQL and Redis, images built by
//! scripts/images.sh and served from a loopback registry of the bench's own) on `berth up` against the same
//! Pods played with `podman kube play`, side by side in one run, and times `make up` from a warm image cache.
//!
//! - berth: the Stack applied with its images already pulled (a warm-up round pulls them), timed until the
//!   Stack is Ready and until the app answers `/health` with 200 on its hostPort; then deleted (deletionPolicy
//!   Delete) and waited for until nothing of it is left. Memory of `berth up` and its shims with the stack Ready.
//! - podman: the Pods the controller created (as YAML, with the generated Secret's values resolved into their
//!   env and the API server's fields stripped) played in dependency order as the controller does (database and
//!   Redis, then the app once their readiness probes pass), and all at once; timed until the app answers.
//! - `make up`: scripts/deps.sh, images.sh and up.sh on a data directory, bridge, registry and port of the
//!   bench's own, until the app answers; `make down` (scripts/down.sh) between rounds.
//!
//! Prints a Markdown table with the ratios berth/podman and removes everything it created.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use berth_e2e::bench::{
    BerthUp, Memory, berth_memory, ensure_root, load_average, percentile, print_memory, ratio,
    release_berth, shims, sum, wait_node_ready,
};
use berth_e2e::demo::{Images, http_get};
use berth_e2e::network::TestNetwork;
use berth_e2e::podman::{Podman, PodmanMemory, ensure_podman, podman_version};
use berth_e2e::{Server, free_port};
use clap::Parser;
use k8s_openapi::api::core::v1::{
    EnvVar, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service,
};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, PostParams,
};
use kube::{Api, ResourceExt};

/// From apply to the app answering, images present: initdb and the app's first probes on a loaded machine.
const ROLLOUT: Duration = Duration::from_secs(300);
/// From delete to nothing left (the database's graceful stop included).
const TEARDOWN: Duration = Duration::from_secs(180);
/// How often the bench looks at the Stack and the app (each look at the app is a curl process).
const POLL: Duration = Duration::from_millis(50);
/// The Stack's name in every round, as in the sample: its Pods are `demo-db`, `demo-redis`, `demo-app-…`.
const STACK: &str = "demo";
/// The label the controller puts on everything a Stack owns.
const STACK_LABEL: &str = "berth.dev/stack";
/// The label that names a Pod's part of the Stack (`database`, `redis`, `app`).
const COMPONENT_LABEL: &str = "berth.dev/component";

#[derive(Parser)]
#[command(
    about = "The demo stack: apply → Ready and memory on berth up against podman kube play, and make up"
)]
struct Args {
    /// The berth binary to run (default: the workspace's release build).
    #[arg(long, env = "BERTH_BIN")]
    berth_bin: Option<PathBuf>,
    /// Timed rounds on each side (after one warm-up round each).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Timed `make up` rounds (each a fresh data directory, then the same one again); 0 leaves them out.
    #[arg(long, default_value_t = 3)]
    make_up_rounds: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.rounds > 0, "--rounds must be positive");
    ensure_root()?;
    let bin = release_berth(args.berth_bin.clone())?;
    ensure_podman()?;
    let images = Images::start();
    let run = format!("{:x}", std::process::id());

    println!("Demo stack benchmark: berth up against podman kube play, and make up");
    println!("- berth: {}", bin.display());
    println!("- podman: {}", podman_version()?);
    println!(
        "- images: berth/postgres:15, berth/redis:7, berth/demo-app:latest from {} (scripts/images.sh)",
        images.addr
    );
    println!(
        "- {} timed rounds each side, {} make up rounds; load average at start: {}",
        args.rounds,
        args.make_up_rounds,
        load_average()
    );

    let manifest = demo_stack(&images.addr)?;
    let berth = bench_berth(&bin, &run, &manifest, args.rounds).await?;
    println!("- berth done; load average: {}", load_average());
    let podman = bench_podman(&run, &berth.pods, args.rounds)?;
    println!("- podman done; load average: {}", load_average());
    let make_up = if args.make_up_rounds == 0 {
        Err("left out (--make-up-rounds 0)".to_owned())
    } else {
        bench_make_up(&bin, &images, args.make_up_rounds)?
    };
    println!("- make up done; load average: {}", load_average());

    print_table(&berth, &podman, &make_up);
    Ok(())
}

/// config/samples/stack.yaml with the bench's registry in place of 127.0.0.1:5000 and deletionPolicy Delete,
/// so that each round starts from nothing (a fresh database: initdb every time, on both sides).
fn demo_stack(registry: &str) -> Result<serde_yaml::Value> {
    let path = Server::repo_root().join("config/samples/stack.yaml");
    let sample =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut stack: serde_yaml::Value = serde_yaml::from_str(&sample)?;
    for component in ["app", "database", "redis"] {
        let image = &mut stack["spec"][component]["image"];
        let reference = image.as_str().unwrap_or_default();
        let Some(path) = reference.strip_prefix("127.0.0.1:5000/") else {
            bail!(
                "the sample's {component} image {reference:?} is not in the registry of `make images` \
                 (127.0.0.1:5000)"
            );
        };
        *image = format!("{registry}/{path}").into();
    }
    stack["spec"]["deletionPolicy"] = "Delete".into();
    ensure!(
        stack["metadata"]["name"].as_str() == Some(STACK),
        "the sample's Stack is not named {STACK}"
    );
    Ok(stack)
}

/// The manifest with the app published on `port` (the sample's 5500 may belong to a running `make up`).
fn with_host_port(manifest: &serde_yaml::Value, port: u16) -> Result<DynamicObject> {
    let mut manifest = manifest.clone();
    let published = &mut manifest["spec"]["app"]["ports"][0]["hostPort"];
    ensure!(
        published.as_u64().is_some(),
        "the sample publishes the app with a hostPort"
    );
    *published = port.into();
    Ok(serde_yaml::from_value(manifest)?)
}

// ---------------------------------------------------------------------------------------------------------
// berth

/// What the berth side measured.
struct BerthFigures {
    /// Apply → Stack Ready, sorted.
    ready: Vec<Duration>,
    /// Apply → the app answering `/health` with 200 on its hostPort, sorted.
    answering: Vec<Duration>,
    /// Delete → nothing of the Stack left (objects, volumes, shims), sorted.
    deleted: Vec<Duration>,
    /// With the stack Ready: `berth up` and its shims.
    up: Memory,
    shims: Memory,
    /// The Pods the controller created, made ready for `podman kube play`.
    pods: Vec<Pod>,
}

/// The API objects one Stack round touches.
struct Cluster {
    stacks: Api<DynamicObject>,
    pods: Api<Pod>,
    services: Api<Service>,
    claims: Api<PersistentVolumeClaim>,
    volumes: Api<PersistentVolume>,
    secrets: Api<Secret>,
    data_dir: PathBuf,
}

async fn bench_berth(
    bin: &Path,
    run: &str,
    manifest: &serde_yaml::Value,
    rounds: usize,
) -> Result<BerthFigures> {
    let node = format!("bench-demo-{run}");
    let up = BerthUp::start(bin, &node, &[]);
    let pid = up.server.pid().context("berth up is not running")?;
    let client = up.server.client().await;
    wait_node_ready(&Api::all(client.clone()), &node).await?;
    let crds = Server::repo_root().join("crds");
    kubectl(&up.server, &["apply", "-f", &crds.to_string_lossy()])?;
    kubectl(
        &up.server,
        &[
            "wait",
            "--for=condition=Established",
            "crd/stacks.berth.dev",
            "--timeout=60s",
        ],
    )?;
    let gvk = GroupVersionKind::gvk("berth.dev", "v1alpha1", "Stack");
    let cluster = Cluster {
        stacks: Api::namespaced_with(
            client.clone(),
            "default",
            &ApiResource::from_gvk_with_plural(&gvk, "stacks"),
        ),
        pods: Api::namespaced(client.clone(), "default"),
        services: Api::namespaced(client.clone(), "default"),
        claims: Api::namespaced(client.clone(), "default"),
        volumes: Api::all(client.clone()),
        secrets: Api::namespaced(client, "default"),
        data_dir: up.server.data_dir.path().to_owned(),
    };

    // The warm-up round pulls and unpacks the three images; it is not counted. Its Pods are what podman plays.
    let port = free_port();
    let (ready, answering) = cluster
        .apply(&with_host_port(manifest, port)?, port)
        .await?;
    println!(
        "- berth warm-up (pulls the images): Ready in {:.2} s, answering in {:.2} s",
        ready.as_secs_f64(),
        answering.as_secs_f64()
    );
    let pods = cluster.pods_for_podman().await?;
    cluster.delete().await?;

    let mut figures = BerthFigures {
        ready: Vec::new(),
        answering: Vec::new(),
        deleted: Vec::new(),
        up: Memory::default(),
        shims: Memory::default(),
        pods,
    };
    for round in 0..rounds {
        let port = free_port();
        let (ready, answering) = cluster
            .apply(&with_host_port(manifest, port)?, port)
            .await?;
        if round + 1 == rounds {
            let (process, shim) = berth_memory(pid, &cluster.data_dir);
            ensure!(
                shim.processes == 3,
                "found {} shims with the demo stack Ready: expected three (app, database, Redis)",
                shim.processes
            );
            figures.up = process;
            figures.shims = shim;
        }
        let deleted = cluster.delete().await?;
        println!(
            "- berth round {}: Ready {:.2} s, answering {:.2} s, deleted {:.2} s",
            round + 1,
            ready.as_secs_f64(),
            answering.as_secs_f64(),
            deleted.as_secs_f64()
        );
        figures.ready.push(ready);
        figures.answering.push(answering);
        figures.deleted.push(deleted);
    }
    print_memory("berth with the stack Ready, berth up", figures.up);
    print_memory("berth with the stack Ready, shims", figures.shims);
    figures.ready.sort_unstable();
    figures.answering.sort_unstable();
    figures.deleted.sort_unstable();
    drop(up);
    Ok(figures)
}

impl Cluster {
    /// Creates the Stack; returns apply → Ready (for its generation) and apply → the app answering on `port`.
    async fn apply(&self, stack: &DynamicObject, port: u16) -> Result<(Duration, Duration)> {
        let start = Instant::now();
        self.stacks
            .create(&PostParams::default(), stack)
            .await
            .context("creating the Stack")?;
        let answering = tokio::task::spawn_blocking(move || wait_answering(port, start));
        let ready = loop {
            let stack = self.stacks.get(STACK).await?;
            if stack_ready(&stack) {
                break start.elapsed();
            }
            ensure!(
                start.elapsed() < ROLLOUT,
                "the Stack was not Ready within {ROLLOUT:?}: {:?}",
                stack.data["status"]
            );
            tokio::time::sleep(POLL).await;
        };
        let answering = answering.await??;
        Ok((ready, answering))
    }

    /// Deletes the Stack and waits until it, its Pods, Services, claims, volumes, Secret and shims are gone.
    async fn delete(&self) -> Result<Duration> {
        let start = Instant::now();
        self.stacks
            .delete(STACK, &DeleteParams::default())
            .await
            .context("deleting the Stack")?;
        let owned = ListParams::default().labels(&format!("{STACK_LABEL}={STACK}"));
        loop {
            let mut left = Vec::new();
            if self.stacks.get_opt(STACK).await?.is_some() {
                left.push("the Stack".to_owned());
            }
            let pods = self.pods.list(&owned).await?.items.len();
            let services = self.services.list(&owned).await?.items.len();
            let claims = self.claims.list(&ListParams::default()).await?.items.len();
            let volumes = self.volumes.list(&ListParams::default()).await?.items.len();
            let secrets = self.secrets.list(&owned).await?.items.len();
            let shims = shims(&self.data_dir).len();
            for (what, n) in [
                ("Pods", pods),
                ("Services", services),
                ("claims", claims),
                ("volumes", volumes),
                ("Secrets", secrets),
                ("shims", shims),
            ] {
                if n > 0 {
                    left.push(format!("{n} {what}"));
                }
            }
            if left.is_empty() {
                return Ok(start.elapsed());
            }
            ensure!(
                start.elapsed() < TEARDOWN,
                "{TEARDOWN:?} after deleting the Stack, left: {}",
                left.join(", ")
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The Stack's Pods as `podman kube play` takes them: name, labels and spec only (no status, uid,
    /// ownerReferences, nodeName, resourceVersion), and each Secret reference in the env resolved to its value,
    /// with `$(VAR)` references expanded as the kubelet does (the app's `DATABASE_URL` names the password so).
    async fn pods_for_podman(&self) -> Result<Vec<Pod>> {
        let owned = ListParams::default().labels(&format!("{STACK_LABEL}={STACK}"));
        let mut pods = Vec::new();
        for pod in self.pods.list(&owned).await?.items {
            let name = pod.name_any();
            let mut spec = pod
                .spec
                .with_context(|| format!("Pod {name} has no spec"))?;
            spec.node_name = None;
            for container in &mut spec.containers {
                ensure!(
                    container.env_from.is_none(),
                    "Pod {name} takes env from a Secret or ConfigMap (envFrom): not carried over to podman"
                );
                let env = container.env.take().unwrap_or_default();
                container.env = Some(self.resolve_env(&name, env).await?);
            }
            pods.push(Pod {
                metadata: ObjectMeta {
                    name: Some(name),
                    labels: pod.metadata.labels,
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
                status: None,
            });
        }
        ensure!(
            pods.len() == 3,
            "the demo Stack has {} Pods: expected three (app, database, Redis)",
            pods.len()
        );
        Ok(pods)
    }

    async fn resolve_env(&self, pod: &str, env: Vec<EnvVar>) -> Result<Vec<EnvVar>> {
        let mut defined: HashMap<String, String> = HashMap::new();
        let mut resolved = Vec::with_capacity(env.len());
        for var in env {
            let value = match (var.value, var.value_from) {
                (Some(value), None) => expand(&value, &defined),
                (None, None) => String::new(),
                (_, Some(source)) => {
                    let Some(selector) = source.secret_key_ref else {
                        bail!(
                            "Pod {pod}'s env {} takes its value from something other than a Secret: not \
                             carried over to podman",
                            var.name
                        );
                    };
                    let secret = self.secrets.get(&selector.name).await?;
                    let from_data = secret
                        .data
                        .as_ref()
                        .and_then(|d| d.get(&selector.key))
                        .map(|b| String::from_utf8_lossy(&b.0).into_owned());
                    let from_string_data = secret
                        .string_data
                        .as_ref()
                        .and_then(|d| d.get(&selector.key))
                        .cloned();
                    from_data.or(from_string_data).with_context(|| {
                        format!("Secret {} has no key {}", selector.name, selector.key)
                    })?
                }
            };
            defined.insert(var.name.clone(), value.clone());
            resolved.push(EnvVar {
                name: var.name,
                value: Some(value),
                value_from: None,
            });
        }
        Ok(resolved)
    }
}

/// Kubernetes' expansion of an env value: `$(NAME)` becomes the value of an earlier variable, `$$` a single `$`;
/// a reference to an unknown name stays as written.
fn expand(value: &str, defined: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after
            .strip_prefix('(')
            .and_then(|inner| inner.split_once(')'))
            .filter(|(name, _)| defined.contains_key(*name))
        {
            out.push_str(&defined[name]);
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn stack_ready(stack: &DynamicObject) -> bool {
    let status = &stack.data["status"];
    let current = status["observedGeneration"].as_i64() == stack.metadata.generation;
    current
        && status["conditions"].as_array().is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Polls the app's `/health` on the host's loopback until it answers 200 (PostgreSQL and Redis reachable);
/// returns the time since `start`.
fn wait_answering(port: u16, start: Instant) -> Result<Duration> {
    let url = format!("http://127.0.0.1:{port}/health");
    loop {
        if http_get(None, &url).is_some_and(|(status, _)| status == 200) {
            return Ok(start.elapsed());
        }
        ensure!(
            start.elapsed() < ROLLOUT,
            "the app did not answer 200 on {url} within {ROLLOUT:?}"
        );
        std::thread::sleep(POLL);
    }
}

/// Runs kubectl against the server; an error carries its output.
fn kubectl(server: &Server, args: &[&str]) -> Result<String> {
    let out = server.kubectl(args);
    ensure!(
        out.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---------------------------------------------------------------------------------------------------------
// podman

/// How podman starts the Pods.
#[derive(Clone, Copy, PartialEq)]
enum Order {
    /// The database and Redis first, the app once their readiness probes pass: what the controller does.
    Dependencies,
    /// All three in one `kube play`: the app retries its connections, so it answers once both are up.
    AllAtOnce,
}

/// What one podman mode measured.
struct PodmanFigures {
    /// Play → the app answering, sorted.
    answering: Vec<Duration>,
    /// `podman pod rm` of the three pods and `volume rm` of their volumes, sorted.
    removed: Vec<Duration>,
}

struct PodmanSide {
    in_order: PodmanFigures,
    at_once: PodmanFigures,
    memory: PodmanMemory,
}

/// The Pods of one round, as YAML, and the readiness probes of the app's dependencies as podman execs.
struct Plays {
    dependencies: String,
    app: String,
    /// `[container, command...]` for `podman exec`: each must succeed before the app is played.
    probes: Vec<Vec<String>>,
}

fn bench_podman(run: &str, pods: &[Pod], rounds: usize) -> Result<PodmanSide> {
    let network = TestNetwork::pick();
    let podman = Podman::new(run, &network.cidr)?;
    println!("- podman: network {} on {}", podman.network, network.cidr);
    for image in pods
        .iter()
        .flat_map(|p| p.spec.iter().flat_map(|s| &s.containers))
        .filter_map(|c| c.image.as_deref())
    {
        podman.pull(image)?;
    }
    // The warm-up round builds podman's pause image; it is not counted.
    let port = free_port();
    podman_round(&podman, &plays(pods, port)?, port, Order::Dependencies)?;

    let mut memory = None;
    let mut side = PodmanSide {
        in_order: PodmanFigures {
            answering: Vec::new(),
            removed: Vec::new(),
        },
        at_once: PodmanFigures {
            answering: Vec::new(),
            removed: Vec::new(),
        },
        memory: PodmanMemory {
            conmon: Memory::default(),
            infra: Memory::default(),
            dns: Memory::default(),
        },
    };
    // The two modes alternate, so that a change in the machine's load touches both alike.
    for round in 0..rounds {
        for order in [Order::Dependencies, Order::AllAtOnce] {
            let port = free_port();
            let plays = plays(pods, port)?;
            let (answering, measured, removed) = podman_round(&podman, &plays, port, order)?;
            if memory.is_none() {
                ensure!(
                    measured.conmon.processes == 6 && measured.infra.processes == 3,
                    "found {} conmons and {} pause containers with the demo pods running: expected six and \
                     three",
                    measured.conmon.processes,
                    measured.infra.processes
                );
                memory = Some(measured);
            }
            let figures = match order {
                Order::Dependencies => &mut side.in_order,
                Order::AllAtOnce => &mut side.at_once,
            };
            println!(
                "- podman round {} ({}): answering {:.2} s, removed {:.2} s",
                round + 1,
                match order {
                    Order::Dependencies => "in order",
                    Order::AllAtOnce => "all at once",
                },
                answering.as_secs_f64(),
                removed.as_secs_f64()
            );
            figures.answering.push(answering);
            figures.removed.push(removed);
        }
    }
    for figures in [&mut side.in_order, &mut side.at_once] {
        figures.answering.sort_unstable();
        figures.removed.sort_unstable();
    }
    side.memory = memory.context("no podman round ran")?;
    for (what, m) in [
        ("conmon", side.memory.conmon),
        ("pause containers", side.memory.infra),
        ("aardvark-dns", side.memory.dns),
    ] {
        print_memory(&format!("podman with the demo pods, {what}"), m);
    }
    drop(podman);
    Ok(side)
}

/// The Pods with the app published on `port`, split into the app and its dependencies.
fn plays(pods: &[Pod], port: u16) -> Result<Plays> {
    let mut dependencies = Vec::new();
    let mut app = Vec::new();
    let mut probes = Vec::new();
    for pod in pods {
        let mut pod = pod.clone();
        let name = pod.name_any();
        let is_app = pod.labels().get(COMPONENT_LABEL).map(String::as_str) == Some("app");
        let spec = pod.spec.as_mut().context("a Pod without a spec")?;
        for container in &mut spec.containers {
            if is_app {
                for published in container.ports.iter_mut().flatten() {
                    if published.host_port.is_some() {
                        published.host_port = Some(i32::from(port));
                    }
                }
                continue;
            }
            let probe = container
                .readiness_probe
                .as_ref()
                .and_then(|p| p.exec.as_ref())
                .and_then(|e| e.command.clone())
                .with_context(|| {
                    format!(
                        "{name}/{}: only exec readiness probes are run on podman",
                        container.name
                    )
                })?;
            // kube play names a pod's containers <pod>-<container>.
            let mut exec = vec![format!("{name}-{}", container.name)];
            exec.extend(probe);
            probes.push(exec);
        }
        let yaml = serde_yaml::to_string(&pod)?;
        if is_app { &mut app } else { &mut dependencies }.push(yaml);
    }
    ensure!(
        app.len() == 1 && dependencies.len() == 2,
        "expected one app Pod and two others (database, Redis)"
    );
    Ok(Plays {
        dependencies: dependencies.join("---\n"),
        app: app.join("---\n"),
        probes,
    })
}

/// Plays the pods in `order` and waits for the app to answer; returns play → answering, podman's memory then,
/// and how long removing the pods and their volumes took.
fn podman_round(
    podman: &Podman,
    plays: &Plays,
    port: u16,
    order: Order,
) -> Result<(Duration, PodmanMemory, Duration)> {
    let start = Instant::now();
    match order {
        Order::Dependencies => {
            podman.play(&plays.dependencies, "dependencies.yaml")?;
            for probe in &plays.probes {
                let mut args = vec!["exec"];
                args.extend(probe.iter().map(String::as_str));
                while !podman.succeeds(&args) {
                    ensure!(
                        start.elapsed() < ROLLOUT,
                        "podman: `{}` did not succeed within {ROLLOUT:?}",
                        probe.join(" ")
                    );
                    std::thread::sleep(POLL);
                }
            }
            podman.play(&plays.app, "app.yaml")?;
        }
        Order::AllAtOnce => {
            let all = format!("{}---\n{}", plays.dependencies, plays.app);
            podman.play(&all, "all.yaml")?;
        }
    }
    let answering = wait_answering(port, start)?;
    let memory = podman.memory();
    let removing = Instant::now();
    podman.remove_all(30)?;
    Ok((answering, memory, removing.elapsed()))
}

// ---------------------------------------------------------------------------------------------------------
// make up

/// `make up` from a warm cache, and again on the same data directory after `make down`.
struct MakeUpFigures {
    /// A fresh data directory: images pulled from the registry into berth's store, initdb.
    fresh: Vec<Duration>,
    /// The data directory of the round before: images in berth's store, the database initialized.
    again: Vec<Duration>,
    /// `make down` (scripts/down.sh).
    down: Vec<Duration>,
}

/// Runs `make down` (scripts/down.sh) for its data directory when dropped, so a failed round leaves nothing.
struct Down<'a> {
    bin: &'a Path,
    data_dir: &'a Path,
}

impl Down<'_> {
    fn run(&self) -> Result<Duration> {
        let start = Instant::now();
        let out = Command::new(Server::repo_root().join("scripts/down.sh"))
            .arg(self.data_dir)
            .env("BERTH", self.bin)
            .stdin(Stdio::null())
            .output()?;
        ensure!(
            out.status.success(),
            "scripts/down.sh failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(start.elapsed())
    }
}

impl Drop for Down<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.run() {
            eprintln!("{e:#}");
        }
    }
}

/// `Err(why)` when the `make up` rounds cannot run here without touching another berth.
fn bench_make_up(
    bin: &Path,
    images: &Images,
    rounds: usize,
) -> Result<Result<MakeUpFigures, String>> {
    let up_sh = Server::repo_root().join("scripts/up.sh");
    let script = std::fs::read_to_string(&up_sh)?;
    if !["BERTH_REGISTRY", "BERTH_HOST_PORT", "BERTH_UP_FLAGS"]
        .iter()
        .all(|v| script.contains(v))
    {
        return Ok(Err(
            "left out: this scripts/up.sh takes no BERTH_REGISTRY, BERTH_HOST_PORT and BERTH_UP_FLAGS, so it \
             would use port 5500, bridge berth0 and the registry on 5000 that a running `make up` may hold"
                .to_owned(),
        ));
    }
    let mut figures = MakeUpFigures {
        fresh: Vec::new(),
        again: Vec::new(),
        down: Vec::new(),
    };
    for round in 0..rounds {
        let data_dir = tempfile::Builder::new()
            .prefix("berth-bench-make-up-")
            .tempdir()?;
        let network = TestNetwork::pick();
        let down = Down {
            bin,
            data_dir: data_dir.path(),
        };
        // The same port and address both times: another hostPort would roll the app out again.
        let (port, listen) = (free_port(), format!("127.0.0.1:{}", free_port()));
        let fresh = make_up(bin, images, data_dir.path(), &network, port, &listen)?;
        figures.down.push(down.run()?);
        let again = make_up(bin, images, data_dir.path(), &network, port, &listen)?;
        figures.down.push(down.run()?);
        println!(
            "- make up round {}: fresh {:.2} s, again {:.2} s",
            round + 1,
            fresh.as_secs_f64(),
            again.as_secs_f64()
        );
        figures.fresh.push(fresh);
        figures.again.push(again);
    }
    for list in [&mut figures.fresh, &mut figures.again, &mut figures.down] {
        list.sort_unstable();
    }
    Ok(Ok(figures))
}

/// What `make up` runs after its (here skipped) cargo build: scripts/deps.sh, scripts/images.sh and
/// scripts/up.sh; timed until the app answers on its port.
fn make_up(
    bin: &Path,
    images: &Images,
    data_dir: &Path,
    network: &TestNetwork,
    port: u16,
    listen: &str,
) -> Result<Duration> {
    let root = Server::repo_root();
    let flags = network.flags().join(" ");
    let start = Instant::now();
    for (script, args) in [
        ("deps.sh", Vec::new()),
        ("images.sh", vec!["all".into()]),
        (
            "up.sh",
            vec![
                bin.display().to_string(),
                data_dir.display().to_string(),
                listen.to_owned(),
            ],
        ),
    ] {
        let mut command = Command::new(root.join("scripts").join(script));
        let out = images
            .env(&mut command)
            .args(&args)
            .current_dir(&root)
            .env("BERTH_HOST_PORT", port.to_string())
            .env("BERTH_UP_FLAGS", &flags)
            .stdin(Stdio::null())
            .output()?;
        ensure!(
            out.status.success(),
            "scripts/{script} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_answering(port, start)
}

// ---------------------------------------------------------------------------------------------------------
// report

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn print_table(berth: &BerthFigures, podman: &PodmanSide, make_up: &Result<MakeUpFigures, String>) {
    let n = berth.answering.len();
    println!();
    println!(
        "| measure | berth | podman, in order | podman, all at once | berth/podman in order | berth/podman all at once |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (label, p) in [("median", 0.5), ("p90", 0.9)] {
        let (b, o, a) = (
            secs(percentile(&berth.answering, p)),
            secs(percentile(&podman.in_order.answering, p)),
            secs(percentile(&podman.at_once.answering, p)),
        );
        println!(
            "| apply → app answering, {label} of {n} (s) | {b:.2} | {o:.2} | {a:.2} | {} | {} |",
            ratio(b, o),
            ratio(b, a)
        );
    }
    println!(
        "| apply → Stack Ready, median (s) | {:.2} | | | | |",
        secs(percentile(&berth.ready, 0.5))
    );
    let (b, o, a) = (
        secs(percentile(&berth.deleted, 0.5)),
        secs(percentile(&podman.in_order.removed, 0.5)),
        secs(percentile(&podman.at_once.removed, 0.5)),
    );
    println!(
        "| delete → all gone, median (s) | {b:.2} | {o:.2} | {a:.2} | {} | {} |",
        ratio(b, o),
        ratio(b, a)
    );
    let berth_total = sum(&[berth.up, berth.shims]);
    let podman_total = podman.memory.total();
    for (label, b, q) in [
        (
            "RSS with the stack up (MiB)",
            berth_total.rss_kib,
            podman_total.rss_kib,
        ),
        (
            "PSS with the stack up (MiB)",
            berth_total.pss_kib,
            podman_total.pss_kib,
        ),
    ] {
        let (b, q) = (Memory::mib(b), Memory::mib(q));
        println!(
            "| {label} | {b:.1} | {q:.1} | {q:.1} | {} | {} |",
            ratio(b, q),
            ratio(b, q)
        );
    }
    println!(
        "| processes counted | {} | {} | {} | | |",
        berth_total.processes, podman_total.processes, podman_total.processes
    );
    println!();
    println!(
        "berth: `berth up` RSS {:.1} MiB / PSS {:.1} MiB, {} shims RSS {:.1} MiB / PSS {:.1} MiB. podman: {} conmons \
         RSS {:.1} / PSS {:.1} MiB, {} pause containers {:.1} / {:.1} MiB, aardvark-dns {:.1} / {:.1} MiB. The \
         containers' own processes (Flask, PostgreSQL, Redis) are not counted on either side.",
        Memory::mib(berth.up.rss_kib),
        Memory::mib(berth.up.pss_kib),
        berth.shims.processes,
        Memory::mib(berth.shims.rss_kib),
        Memory::mib(berth.shims.pss_kib),
        podman.memory.conmon.processes,
        Memory::mib(podman.memory.conmon.rss_kib),
        Memory::mib(podman.memory.conmon.pss_kib),
        podman.memory.infra.processes,
        Memory::mib(podman.memory.infra.rss_kib),
        Memory::mib(podman.memory.infra.pss_kib),
        Memory::mib(podman.memory.dns.rss_kib),
        Memory::mib(podman.memory.dns.pss_kib),
    );
    println!();
    match make_up {
        Ok(m) => {
            println!("| make up, warm image cache | median (s) | min (s) | max (s) |");
            println!("| --- | ---: | ---: | ---: |");
            for (label, list) in [
                ("fresh data directory → app answering", &m.fresh),
                ("again after make down → app answering", &m.again),
                ("make down", &m.down),
            ] {
                println!(
                    "| {label} ({} rounds) | {:.2} | {:.2} | {:.2} |",
                    list.len(),
                    secs(percentile(list, 0.5)),
                    secs(percentile(list, 0.0)),
                    secs(percentile(list, 1.0))
                );
            }
        }
        Err(why) => println!("make up: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_replaces_earlier_variables_unescapes_and_keeps_unknown_references() {
        let defined = HashMap::from([("PASSWORD".to_owned(), "s3cr3t".to_owned())]);
        assert_eq!(
            expand("postgresql://demo:$(PASSWORD)@demo-db:5432/demo", &defined),
            "postgresql://demo:s3cr3t@demo-db:5432/demo"
        );
        assert_eq!(
            expand("$$(PASSWORD) $(OTHER) $", &defined),
            "$(PASSWORD) $(OTHER) $"
        );
        assert_eq!(expand("a$(PASSWORD", &defined), "a$(PASSWORD");
    }
}
