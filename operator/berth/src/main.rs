//! The `berth` binary: parses flags and wires components together. Each subcommand is one component
//! (or, for `up`, all of them) configured from the command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

mod pull_progress;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Run app stacks (web app + PostgreSQL + Redis) the Kubernetes way"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ServerArgs {
    /// Where berth keeps its state (database, certificates, kubeconfig).
    #[arg(long, default_value = "/var/lib/berth", env = "BERTH_DATA_DIR")]
    data_dir: PathBuf,
    /// Address the API server listens on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
}

/// The node's Pod network: each `berth up` or `berth agent` on a machine needs its own bridge and CIDR.
#[derive(clap::Args, Clone)]
struct NetworkArgs {
    /// The bridge the Pods' veths join (at most 15 characters); created at start, removed by `berth down`.
    #[arg(long, default_value = berth_agent::net::DEFAULT_BRIDGE)]
    bridge: String,
    /// The Pods' addresses; its first address is the bridge's (the Pods' gateway and DNS server). It must
    /// not overlap a route of the host.
    #[arg(long, default_value = berth_agent::net::DEFAULT_CIDR)]
    pod_cidr: String,
    /// The DNS domain of Services and Pods.
    #[arg(long, default_value = berth_agent::net::DEFAULT_CLUSTER_DOMAIN)]
    cluster_domain: String,
}

impl NetworkArgs {
    fn apply(&self, config: &mut berth_agent::kubelet::Config) -> Result<()> {
        config.network.bridge = self.bridge.clone();
        config.network.cidr = self.pod_cidr.parse().with_context(|| {
            format!(
                "--pod-cidr {:?} is not an IPv4 CIDR (like {})",
                self.pod_cidr,
                berth_agent::net::DEFAULT_CIDR
            )
        })?;
        config.network.cluster_domain = self.cluster_domain.clone();
        Ok(())
    }
}

/// Where the node's images come from.
#[derive(clap::Args, Clone)]
struct RegistryArgs {
    /// A registry (HOST or HOST:PORT, as in the image reference) that the agent may reach over plain http;
    /// repeat it for several. Loopback registries always may.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registries: Vec<String>,
}

impl RegistryArgs {
    fn apply(&self, config: &mut berth_agent::kubelet::Config) {
        config
            .insecure_registries
            .clone_from(&self.insecure_registries);
    }
}

/// `berth up`: the API server's flags and the control plane's.
#[derive(clap::Args, Clone)]
struct UpArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// How long a node's Lease may go unrenewed before the node turns NotReady (Ready=Unknown).
    #[arg(long, default_value = "40s", value_parser = humantime::parse_duration)]
    node_lease_grace: Duration,
    /// The name of this machine's Node (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// Where the kubelet endpoint listens (`kubectl logs`, `exec`, `attach`); port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    kubelet_listen: SocketAddr,
    #[command(flatten)]
    network: NetworkArgs,
    #[command(flatten)]
    registries: RegistryArgs,
    /// Run no node agent here (as k3s's `server --disable-agent`): this machine is not a Node, and Pods wait
    /// for an agent elsewhere (`berth agent`) to register one.
    #[arg(long)]
    disable_agent: bool,
    /// Run no Stack controller here: Stacks wait for one elsewhere (`berth controller --kubeconfig`), e.g. to
    /// run it as a process of its own.
    #[arg(long)]
    disable_controller: bool,
}

/// `berth agent`: the node agent alone, against any Kubernetes API server.
#[derive(clap::Args, Clone)]
struct AgentArgs {
    /// The kubeconfig to use; without it: $KUBECONFIG or ~/.kube/config.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Where the agent keeps images, container state and logs.
    #[arg(long, default_value = "/var/lib/berth", env = "BERTH_DATA_DIR")]
    data_dir: PathBuf,
    /// The name of this machine's Node (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// Where the kubelet endpoint listens (`kubectl logs`, `exec`, `attach`).
    #[arg(long, default_value = "127.0.0.1:10250")]
    kubelet_listen: SocketAddr,
    /// The data directory of the `berth apiserver` this agent serves, for its CA (the endpoint's certificate
    /// and the API server's client certificate both chain to it); without it the endpoint is off.
    #[arg(long)]
    apiserver_data_dir: Option<PathBuf>,
    #[command(flatten)]
    network: NetworkArgs,
    #[command(flatten)]
    registries: RegistryArgs,
}

/// `berth controller`: where the API is, and how this replica runs.
#[derive(clap::Args, Clone)]
struct ControllerArgs {
    /// The kubeconfig to use; without it: $KUBECONFIG, ~/.kube/config, or the in-cluster service account.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:8080")]
    metrics_addr: SocketAddr,
    /// Hold a coordination.k8s.io Lease while reconciling, so that one of several replicas acts at a time.
    #[arg(long)]
    leader_elect: bool,
    /// The namespace of the leader Lease (in a cluster: the controller's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_elect_namespace: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run berth on this machine: the API server, the control-plane loops (scheduler, garbage collector,
    /// namespace lifecycle, local volumes, node lifecycle) and the Stack controller.
    Up(UpArgs),
    /// Run the embedded Kubernetes-compatible API server alone.
    Apiserver(ServerArgs),
    /// Run the Stack controller alone, against any Kubernetes API server.
    Controller(ControllerArgs),
    /// Run the node agent alone: register this machine as a Node and run the Pods bound to it.
    Agent(AgentArgs),
    /// Stop what `berth up` started on a data directory: the `berth up` process, every container and the
    /// Pod network (bridge, veths, nftables table).
    Down {
        #[arg(long, default_value = "/var/lib/berth", env = "BERTH_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Print the Stack CustomResourceDefinition as YAML.
    Crd,
    /// Print the admin kubeconfig of a data directory.
    Kubeconfig {
        #[arg(long, default_value = "/var/lib/berth", env = "BERTH_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Manage the node's local images.
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Import an OCI image layout (directory), an OCI archive or a `docker save` archive.
    Import {
        /// The archive or layout directory.
        path: PathBuf,
        #[arg(long, default_value = "/var/lib/berth", env = "BERTH_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Pull an image from its registry into the local store, showing each layer's progress.
    Pull {
        /// The image, e.g. `busybox:1.36` or `registry.example.com:5000/team/app@sha256:...`.
        reference: String,
        #[arg(long, default_value = "/var/lib/berth", env = "BERTH_DATA_DIR")]
        data_dir: PathBuf,
        /// The directory whose `config.json` holds registry logins (as docker's `--config`); without it
        /// ~/.docker, when it has one.
        #[arg(long, env = "DOCKER_CONFIG")]
        docker_config: Option<PathBuf>,
        /// Log in to the image's registry as this user, with the password read from standard input.
        #[arg(long, requires = "password_stdin")]
        username: Option<String>,
        /// Read the password for --username from standard input.
        #[arg(long, requires = "username")]
        password_stdin: bool,
        /// Reach the image's registry over plain http (a loopback registry always may).
        #[arg(long)]
        insecure: bool,
    },
    /// List the images in the local store.
    Ls {
        #[arg(long, default_value = "/var/lib/berth", env = "BERTH_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Remove the images no container of this node runs (its Pods' records say which), and the blobs and
    /// layers only they used.
    Prune {
        #[arg(long, default_value = "/var/lib/berth", env = "BERTH_DATA_DIR")]
        data_dir: PathBuf,
    },
}

fn image_store(data_dir: &Path) -> Result<berth_agent::image::ImageStore> {
    let root = data_dir.join("images");
    berth_agent::image::ImageStore::open(&root)
        .with_context(|| format!("opening the image store {}", root.display()))
}

fn image(command: ImageCommand) -> Result<()> {
    match command {
        ImageCommand::Import { path, data_dir } => {
            let refs = image_store(&data_dir)?
                .import(&path)
                .with_context(|| format!("importing {}", path.display()))?;
            for reference in refs {
                println!("imported {reference}");
            }
        }
        ImageCommand::Pull {
            reference,
            data_dir,
            docker_config,
            username,
            password_stdin: _,
            insecure,
        } => {
            let mut store = image_store(&data_dir)?;
            let registry = berth_agent::image::registry(&reference)?;
            if insecure {
                store = store.with_insecure_registries(vec![registry.clone()]);
            }
            let mut credentials = docker_credentials(docker_config.as_deref())?;
            if let Some(username) = username {
                let password = std::io::read_to_string(std::io::stdin())
                    .context("reading the password from standard input")?;
                credentials.add_login(
                    &registry,
                    &username,
                    password.trim_end_matches(['\r', '\n']),
                );
            }
            let progress = std::sync::Arc::new(pull_progress::PullProgress::new());
            let reporter = progress.clone();
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let image = runtime.block_on(store.pull(&reference, &credentials, &move |event| {
                reporter.report(event)
            }))?;
            progress.finish(&image.reference);
        }
        ImageCommand::Prune { data_dir } => {
            let layout = berth_agent::kubelet::Layout::new(&data_dir);
            let in_use = layout
                .images_in_use()
                .with_context(|| format!("reading the Pod records under {}", data_dir.display()))?;
            let store = image_store(&data_dir)?;
            let before = store.list()?.len();
            let freed = store.prune(&in_use)?;
            let after = store.list()?.len();
            println!(
                "removed {} image(s), kept {after} in use, freed {}",
                before.saturating_sub(after),
                human_size(freed)
            );
        }
        ImageCommand::Ls { data_dir } => {
            println!("{:<60} {:<19} {:>10}", "IMAGE", "DIGEST", "SIZE");
            for image in image_store(&data_dir)?.list()? {
                let digest = image.digest.to_string();
                println!(
                    "{:<60} {:<19} {:>10}",
                    image.reference.as_deref().unwrap_or("<none>"),
                    &digest[..digest.len().min(19)],
                    human_size(image.size)
                );
            }
        }
    }
    Ok(())
}

/// The registry logins of a docker config directory (`DIR/config.json`): the one given, which must have it,
/// or ~/.docker when it does.
fn docker_credentials(dir: Option<&Path>) -> Result<berth_agent::image::Credentials> {
    let (path, required) = match dir {
        Some(dir) => (dir.join("config.json"), true),
        None => match std::env::var_os("HOME") {
            Some(home) => (Path::new(&home).join(".docker/config.json"), false),
            None => return Ok(berth_agent::image::Credentials::none()),
        },
    };
    match std::fs::read(&path) {
        Ok(json) => berth_agent::image::Credentials::from_docker_config(&json)
            .with_context(|| format!("reading the registry logins in {}", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok(berth_agent::image::Credentials::none())
        }
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

/// Sizes as `docker images` prints them (decimal units).
fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit + 1 < units.len() {
        size /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{size:.1}{}", units[unit])
    }
}

/// Caps glibc's malloc at two arenas, for a long-running process; call it before any thread starts. glibc
/// otherwise gives threads that meet contention arenas of their own (up to eight per core), each keeping the
/// memory freed into it; berth's threads mostly wait on I/O, so more arenas buy no speed, only memory (the
/// agent with 10 Pods: 0.5 MiB less). `MALLOC_ARENA_MAX` in the environment still wins.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt sets one allocator parameter; no other thread exists yet to allocate concurrently.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn main() -> Result<()> {
    // `berth shim …`, a container's shim started by the node agent, before anything else: it forks, so no
    // runtime or thread may have started, and its long-lived phase should touch as little of the binary as it
    // can, clap's parser included.
    if let Some(code) = berth_agent::runtime::shim::main_if_shim(std::env::args_os()) {
        return match code {
            std::process::ExitCode::SUCCESS => Ok(()),
            _ => std::process::exit(1),
        };
    }
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Up(_) | Command::Apiserver(_) | Command::Controller(_) | Command::Agent(_)
    ) {
        limit_malloc_arenas();
    }
    match cli.command {
        Command::Image(command) => image(command),
        Command::Crd => {
            print!("{}", berth_api::crd_yaml());
            Ok(())
        }
        Command::Kubeconfig { data_dir } => {
            let path = berth_apiserver::pki::kubeconfig_path(&data_dir);
            let config = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "reading {} (has `berth up` or `berth apiserver` run with --data-dir {}?)",
                    path.display(),
                    data_dir.display()
                )
            })?;
            print!("{config}");
            Ok(())
        }
        Command::Up(args) => serve(args.server.clone(), Some(args)),
        Command::Apiserver(args) => serve(args, None),
        Command::Controller(args) => controller(args),
        Command::Agent(args) => agent(args),
        Command::Down { data_dir } => down(&data_dir),
    }
}

fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Worker threads of `berth agent`'s runtime at most. The agent waits on I/O (the API's watches, the shims'
/// sockets, probes, DNS) and unpacks layers on blocking threads, so more workers buy it nothing; each costs a
/// thread and its share of memory (8 instead of 2: 0.5 MiB more with 10 Pods, bench-agent-memory).
const AGENT_WORKER_THREADS: usize = 2;

/// `berth agent`: the kubelet alone, until Ctrl-C or SIGTERM; containers keep running after it stops.
fn agent(args: AgentArgs) -> Result<()> {
    init_tracing();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // TOKIO_WORKER_THREADS in the environment still wins.
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        builder.worker_threads(cores.min(AGENT_WORKER_THREADS));
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let client = match &args.kubeconfig {
            Some(path) => client_from_kubeconfig(path).await?,
            None => kube::Client::try_default()
                .await
                .context("finding the Kubernetes API: pass --kubeconfig")?,
        };
        let node = args
            .node_name
            .unwrap_or_else(berth_agent::kubelet::default_node_name);
        let mut config = berth_agent::kubelet::Config::new(args.data_dir, node.clone());
        args.network.apply(&mut config)?;
        args.registries.apply(&mut config);
        if let Some(pki_dir) = &args.apiserver_data_dir {
            config.server = Some(kubelet_server(pki_dir, &node, args.kubelet_listen)?);
        }
        berth_agent::kubelet::run(client, config, interrupted()).await?;
        Ok(())
    })
}

/// `berth down`: stops `berth up` on the data directory, then removes every container it ran.
fn down(data_dir: &Path) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let report = runtime.block_on(berth_agent::kubelet::down(data_dir))?;
    if let Some(pid) = report.stopped_pid {
        eprintln!("berth: stopped berth up (pid {pid})");
    }
    eprintln!("berth: removed {} containers", report.removed_containers);
    if let Some(bridge) = report.removed_bridge {
        eprintln!("berth: removed the pod network (bridge {bridge})");
    }
    Ok(())
}

fn serve(args: ServerArgs, up: Option<UpArgs>) -> Result<()> {
    init_tracing();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let running = berth_apiserver::start(berth_apiserver::Config {
            data_dir: args.data_dir.clone(),
            listen: args.listen,
        })
        .await?;
        eprintln!(
            "berth API server ready at https://{}\n  export KUBECONFIG={}",
            running.addr,
            running.kubeconfig.display()
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut control_plane = match &up {
            Some(up) => Some(start_control_plane(&running.kubeconfig, up, stopped).await?),
            None => None,
        };
        let (stop_controller, controller_stopped) = tokio::sync::oneshot::channel::<()>();
        let mut controller = match &up {
            Some(up) if !up.disable_controller => {
                Some(start_controller(&running.kubeconfig, controller_stopped).await?)
            }
            _ => None,
        };
        let (stop_agent, agent_stopped) = tokio::sync::oneshot::channel::<()>();
        let mut agent = match &up {
            Some(up) if !up.disable_agent => {
                Some(start_agent(&running.kubeconfig, up, agent_stopped).await?)
            }
            _ => None,
        };
        tokio::select! {
            result = running.serve => result.context("the API server stopped")?,
            () = interrupted() => {
                eprintln!("berth: stopping the agent, the control plane and the API server (containers keep running)");
            }
            ended = async {
                match control_plane.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            } => {
                ended.context("the control plane panicked")?.context("the control plane stopped")?;
            }
            ended = async {
                match controller.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            } => {
                ended.context("the Stack controller panicked")?.context("the Stack controller stopped")?;
            }
            ended = async {
                match agent.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            } => {
                ended.context("the node agent panicked")?.context("the node agent stopped")?;
            }
        }
        let _ = stop_agent.send(());
        if let Some(task) = agent {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        // The control plane gives its leader Lease up while the API server still answers.
        let _ = stop.send(());
        let _ = stop_controller.send(());
        if let Some(task) = controller {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        if let Some(task) = control_plane {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        Ok(())
    })
}

/// Starts the control-plane loops as a client of the API server that just started, until `stopped` fires.
async fn start_control_plane(
    kubeconfig: &Path,
    up: &UpArgs,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> Result<tokio::task::JoinHandle<Result<(), berth_controlplane::Error>>> {
    let config = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default())
            .await
            .with_context(|| format!("using {}", kubeconfig.display()))?;
    let client = kube::Client::try_from(config).context("building the control plane's client")?;
    let mut settings = berth_controlplane::Config::new(up.server.data_dir.clone());
    settings.node_lease_grace = up.node_lease_grace;
    Ok(tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        berth_controlplane::run(client, settings, shutdown).await
    }))
}

/// Starts the node agent as a client of the API server that just started, until `stopped` fires. Its
/// containers live under the same data directory and survive the agent.
async fn start_agent(
    kubeconfig: &Path,
    up: &UpArgs,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> Result<tokio::task::JoinHandle<Result<(), berth_agent::kubelet::Error>>> {
    let client = client_from_kubeconfig(kubeconfig).await?;
    let data_dir = up.server.data_dir.clone();
    berth_agent::kubelet::write_pid_file(&data_dir)?;
    let node = up
        .node_name
        .clone()
        .unwrap_or_else(berth_agent::kubelet::default_node_name);
    let mut config = berth_agent::kubelet::Config::new(data_dir.clone(), node.clone());
    up.network.apply(&mut config)?;
    up.registries.apply(&mut config);
    config.server = Some(kubelet_server(&data_dir, &node, up.kubelet_listen)?);
    Ok(tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        berth_agent::kubelet::run(client, config, shutdown).await
    }))
}

/// The kubelet endpoint's settings: a serving certificate from the CA of the API server's data directory, and
/// that CA's kubelet client as the only client it admits.
fn kubelet_server(
    apiserver_data_dir: &Path,
    node: &str,
    listen: SocketAddr,
) -> Result<berth_agent::kubelet::server::ServerConfig> {
    let serving = berth_apiserver::pki::issue_kubelet_serving(
        apiserver_data_dir,
        &[listen.ip()],
        &[node.to_owned()],
    )
    .context("issuing the kubelet endpoint's certificate")?;
    let trust = berth_apiserver::pki::kubelet_client_trust(apiserver_data_dir)
        .context("reading the cluster CA")?;
    let mut config = berth_agent::kubelet::server::ServerConfig::new(
        berth_agent::kubelet::server::TlsIdentity {
            cert_pem: serving.cert_pem,
            key_pem: serving.key_pem,
            client_ca_pem: trust.ca_pem,
            client_name: trust.client_name.to_owned(),
        },
    );
    config.listen = listen;
    Ok(config)
}

/// Starts the Stack controller as a client of the API server that just started, until `stopped` fires.
async fn start_controller(
    kubeconfig: &Path,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> Result<tokio::task::JoinHandle<Result<(), berth_controller::RunError>>> {
    let client = client_from_kubeconfig(kubeconfig).await?;
    Ok(tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        berth_controller::run(client, berth_controller::Config::default(), shutdown).await
    }))
}

async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client> {
    let config = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default())
            .await
            .with_context(|| format!("using {}", path.display()))?;
    kube::Client::try_from(config)
        .with_context(|| format!("building a client from {}", path.display()))
}

/// `berth controller`: the Stack controller alone, until Ctrl-C or SIGTERM.
fn controller(args: ControllerArgs) -> Result<()> {
    init_tracing();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let client = match &args.kubeconfig {
            Some(path) => client_from_kubeconfig(path).await?,
            None => kube::Client::try_default().await.context(
                "finding the Kubernetes API: no --kubeconfig, and neither $KUBECONFIG, ~/.kube/config nor an \
                 in-cluster service account works",
            )?,
        };
        let config = berth_controller::Config {
            metrics_addr: Some(args.metrics_addr),
            leader_election: args.leader_elect.then(|| {
                berth_controller::LeaseConfig::new(&args.leader_elect_namespace, "berth-controller")
            }),
            ..berth_controller::Config::default()
        };
        berth_controller::run(client, config, interrupted()).await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_registries_of_up_and_agent_reach_the_agent_config() {
        for command in ["up", "agent"] {
            let cli = Cli::try_parse_from([
                "berth",
                command,
                "--insecure-registry",
                "10.0.0.5:5000",
                "--insecure-registry",
                "registry.lan",
            ])
            .unwrap();
            let registries = match cli.command {
                Command::Up(up) => up.registries,
                Command::Agent(agent) => agent.registries,
                _ => panic!("berth {command} parsed as another command"),
            };
            let mut config = berth_agent::kubelet::Config::new("/nonexistent", "node");
            registries.apply(&mut config);
            assert_eq!(
                config.insecure_registries,
                ["10.0.0.5:5000", "registry.lan"],
                "berth {command}"
            );
        }
    }
}
