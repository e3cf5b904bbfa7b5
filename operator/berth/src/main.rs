//! The `berth` binary: parses flags and wires components together. Each subcommand is one component
//! (or, for `up`, all of them) configured from the command line.

use std::net::SocketAddr;
use std::path::PathBuf;

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

#[derive(Subcommand)]
enum Command {
    /// Run berth on this machine: the embedded control plane (for now, the API server).
    Up(ServerArgs),
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
        Command::Up(args) | Command::Apiserver(args) => serve(args),
    }
}

fn serve(args: ServerArgs) -> Result<()> {
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
        tokio::select! {
            result = running.serve => result.context("the API server stopped")?,
            signal = tokio::signal::ctrl_c() => {
                signal.context("waiting for Ctrl-C")?;
                eprintln!("berth: stopping the API server");
            }
        }
        Ok(())
    })
}
