//! The `berth` binary: parses flags and wires components together. Each subcommand is one component
//! (or, for `up`, all of them) configured from the command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

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

/// `berth up`: the API server's flags and the control plane's.
#[derive(clap::Args, Clone)]
struct UpArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// How long a node's Lease may go unrenewed before the node turns NotReady (Ready=Unknown).
    #[arg(long, default_value = "40s", value_parser = humantime::parse_duration)]
    node_lease_grace: Duration,
}

#[derive(Subcommand)]
enum Command {
    /// Run berth on this machine: the API server and the control-plane loops (scheduler, garbage collector,
    /// namespace lifecycle, local volumes, node lifecycle).
    Up(UpArgs),
    /// Run the embedded Kubernetes-compatible API server alone.
    Apiserver(ServerArgs),
    /// Print the Stack CustomResourceDefinition as YAML.
    Crd,
    /// Print the admin kubeconfig of a data directory.
    Kubeconfig {
        #[arg(long, default_value = "/var/lib/berth", env = "BERTH_DATA_DIR")]
        data_dir: PathBuf,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
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
    }
}

fn serve(args: ServerArgs, up: Option<UpArgs>) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
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
        tokio::select! {
            result = running.serve => result.context("the API server stopped")?,
            signal = tokio::signal::ctrl_c() => {
                signal.context("waiting for Ctrl-C")?;
                eprintln!("berth: stopping the control plane and the API server");
            }
            ended = async {
                match control_plane.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            } => {
                ended.context("the control plane panicked")?.context("the control plane stopped")?;
            }
        }
        // The control plane gives its leader Lease up while the API server still answers.
        let _ = stop.send(());
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
