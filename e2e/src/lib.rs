//! Test harness for end-to-end tests: starts the real `berth` binary on a free loopback port with its own
//! data directory, drives it with the real kubectl and with kube-rs, and kills it when the test ends.

pub mod bench;
pub mod demo;
pub mod network;
pub mod podman;
pub mod registry;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a server may take to start listening.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// The `berth` binary under test: `$BERTH_BIN`, or the workspace's debug build.
pub fn berth_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("BERTH_BIN") {
        return PathBuf::from(bin);
    }
    let bin = workspace_bin("debug");
    assert!(
        bin.exists(),
        "{} does not exist: build it first (`cargo build -p berth`, or run `make test`)",
        bin.display()
    );
    bin
}

/// Where cargo puts the workspace's `berth` binary for a profile (`debug`, `release`).
pub fn workspace_bin(profile: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join(profile).join("berth")
}

/// Polls `check` every 50 ms until it returns Some or the deadline passes.
pub fn wait_for<T>(what: &str, deadline: Duration, check: impl FnMut() -> Option<T>) -> T {
    wait_every(what, deadline, Duration::from_millis(50), check)
}

/// Polls `check` every `interval` (for checks that cost a process, like kubectl) until it returns Some; panics
/// naming `what` after `deadline`.
pub fn wait_every<T>(
    what: &str,
    deadline: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(interval);
    }
}

/// A running `berth apiserver`, killed on drop. Its data directory lives as long as the value.
pub struct Server {
    pub data_dir: tempfile::TempDir,
    pub addr: SocketAddr,
    bin: PathBuf,
    /// The subcommand and its extra flags (`apiserver`, or `up` with node settings).
    command: Vec<String>,
    child: Option<Child>,
}

impl Server {
    /// Starts `berth apiserver` on a free port with a fresh data directory.
    pub fn start() -> Server {
        Server::start_bin(berth_bin())
    }

    /// Like `start`, with a given `berth` binary (benchmarks run the release build).
    pub fn start_bin(bin: PathBuf) -> Server {
        Server::start_command(bin, &["apiserver"])
    }

    /// Starts `berth up` (the whole embedded control plane) with extra flags, e.g. node network settings.
    /// Without `--bridge`, it gets a Pod network of its own ([`network::TestNetwork`]), so that tests beside
    /// each other never share a bridge; `berth down` removes it (and every container) on drop.
    pub fn start_up(extra: &[&str]) -> Server {
        let mut command: Vec<String> = vec!["up".into()];
        command.extend(extra.iter().map(|s| s.to_string()));
        if !extra.contains(&"--bridge") {
            command.extend(network::TestNetwork::pick().flags());
        }
        let command: Vec<&str> = command.iter().map(String::as_str).collect();
        Server::start_command(berth_bin(), &command)
    }

    /// Starts `berth <command...> --data-dir <fresh dir> --listen 127.0.0.1:0`.
    pub fn start_command(bin: PathBuf, command: &[&str]) -> Server {
        let data_dir = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir()
            .expect("creating a data directory");
        let mut server = Server {
            data_dir,
            addr: "127.0.0.1:0".parse().expect("a valid address"),
            bin,
            command: command.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.launch();
        server
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.path().join("kubeconfig")
    }

    fn launch(&mut self) {
        let kubeconfig = self.kubeconfig();
        let _ = std::fs::remove_file(&kubeconfig);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join("apiserver.log"))
            .expect("opening the server log");
        let child = Command::new(&self.bin)
            .args(&self.command)
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg("--listen")
            .arg(self.addr.to_string())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting berth apiserver");
        self.child = Some(child);
        // The kubeconfig is written once the port is bound; it names the actual port.
        let server_url = wait_for("the kubeconfig", START_DEADLINE, || {
            let text = std::fs::read_to_string(&kubeconfig).ok()?;
            let line = text
                .lines()
                .find(|l| l.trim_start().starts_with("server: "))?;
            Some(
                line.trim_start()
                    .trim_start_matches("server: https://")
                    .to_owned(),
            )
        });
        self.addr = server_url.parse().expect("the kubeconfig names host:port");
        let addr = self.addr;
        wait_for("the server to accept connections", START_DEADLINE, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
        });
    }

    /// The server process's id while it runs (to read its /proc entries).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no chance to flush or clean up, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same address and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Runs the real kubectl against this server.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with_stdin(args, None)
    }

    pub fn kubectl_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        Kubectl::with_kubeconfig(self.kubeconfig(), None).run(args, stdin)
    }

    /// Runs kubectl and returns its stdout, failing the test with kubectl's stderr when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        Kubectl::with_kubeconfig(self.kubeconfig(), None).ok(args)
    }

    /// [`Kubectl::pod_events`] with a kubectl of no cache of its own.
    pub fn pod_events(&self, pod: &str) -> Vec<(String, String)> {
        Kubectl::with_kubeconfig(self.kubeconfig(), None).pod_events(pod)
    }

    /// A kube-rs client using the server's admin kubeconfig.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig =
            kube::config::Kubeconfig::read_from(self.kubeconfig()).expect("reading the kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("a usable kubeconfig");
        kube::Client::try_from(config).expect("building a kube client")
    }

    /// The workspace root (for manifests such as crds/ and config/samples/).
    pub fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        // What `berth up` leaves on the host: containers, network namespaces, the bridge, its nftables table.
        if self.command.first().is_some_and(|c| c == "up") {
            berth_down(&self.bin, self.data_dir.path());
        }
    }
}

/// `berth down --data-dir <dir>`: stops a `berth up` on that data directory and removes every container and
/// the Pod network it left. Whether it succeeded; for cleanup on drop, where a failure cannot fail the test.
pub fn berth_down(bin: &Path, data_dir: &Path) -> bool {
    Command::new(bin)
        .arg("down")
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One kubectl binary against one server. kubectl caches discovery (and OpenAPI documents) per host:port under
/// ~/.kube/cache, so a port reused from an earlier server could answer with stale resources: [`Kubectl::new`]
/// and [`Kubectl::with_bin`] give each server, and each binary, a cache directory in the server's data dir.
pub struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    cache_dir: Option<PathBuf>,
    /// Names the binary in failure messages (its version, when a test runs several).
    label: String,
}

impl Kubectl {
    /// The kubectl to test with ([`kubectl_bin`]), with a cache of this server's own.
    pub fn new(server: &Server) -> Kubectl {
        let cache = server.data_dir.path().join("kubectl-cache");
        Kubectl::with_kubeconfig(server.kubeconfig(), Some(cache))
    }

    /// Another kubectl binary (one of several versions), with a cache of its own named by `label`.
    pub fn with_bin(server: &Server, bin: PathBuf, label: &str) -> Kubectl {
        let cache = server
            .data_dir
            .path()
            .join(format!("kubectl-cache-{label}"));
        Kubectl {
            bin,
            label: label.to_owned(),
            ..Kubectl::with_kubeconfig(server.kubeconfig(), Some(cache))
        }
    }

    /// The kubectl to test with, for a kubeconfig that no [`Server`] of the test wrote (`make up`'s); no
    /// `cache_dir` is the user's default cache (~/.kube/cache).
    pub fn with_kubeconfig(kubeconfig: PathBuf, cache_dir: Option<PathBuf>) -> Kubectl {
        Kubectl {
            bin: kubectl_bin(),
            kubeconfig,
            cache_dir,
            label: String::new(),
        }
    }

    /// The command line, to run with other stdio (a watch streaming its output).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command.env("KUBECONFIG", &self.kubeconfig);
        if let Some(cache) = &self.cache_dir {
            command.arg(format!("--cache-dir={}", cache.display()));
        }
        command.args(args);
        command
    }

    /// Runs kubectl to its end, with `stdin` as its input.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = self
            .command(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin was piped")
                .write_all(input.as_bytes())
                .expect("writing kubectl's stdin");
        }
        child.wait_with_output().expect("waiting for kubectl")
    }

    /// Runs kubectl and returns its stdout; fails the test with kubectl's stderr when kubectl fails.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_stdin(args, None)
    }

    pub fn ok_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {}{} failed: {}",
            self.label_prefix(),
            args.join(" "),
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl, expects it to fail, and returns its stderr.
    pub fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            !out.status.success(),
            "kubectl {}{} succeeded but should have failed: {}",
            self.label_prefix(),
            args.join(" "),
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn label_prefix(&self) -> String {
        if self.label.is_empty() {
            String::new()
        } else {
            format!("{} ", self.label)
        }
    }
}

impl Kubectl {
    /// The reasons and notes of the Events (events.k8s.io, as kube-rs' Recorder writes them) about a Pod of
    /// the current namespace.
    pub fn pod_events(&self, pod: &str) -> Vec<(String, String)> {
        let out = self.ok(&["get", "events.v1.events.k8s.io", "-o", "json"]);
        let list: k8s_openapi::serde_json::Value =
            k8s_openapi::serde_json::from_str(&out).expect("an event list");
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["regarding"]["name"] == pod)
            .map(|e| {
                (
                    e["reason"].as_str().unwrap_or_default().to_owned(),
                    e["note"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Starts a long-running kubectl (`get -w`) whose stdout is read line by line; killed on drop.
    pub fn watch(&self, args: &[&str]) -> Watch {
        let stderr = tempfile::NamedTempFile::new().expect("a file for the watch's stderr");
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().expect("reopening the watch's stderr file"))
            .spawn()
            .expect("starting kubectl get -w");
        let stdout = child.stdout.take().expect("stdout was piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watch {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }
}

/// A kubectl watch started by [`Kubectl::watch`]: its stdout lines, in order.
pub struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: tempfile::NamedTempFile,
}

impl Watch {
    /// Every line read so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Reads lines until `check` returns Some for one, failing the test (with the lines so far and kubectl's
    /// stderr) at the deadline or when kubectl exits.
    pub fn wait_line<T>(
        &mut self,
        what: &str,
        deadline: Duration,
        mut check: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            let left = deadline.saturating_sub(start.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = check(&line);
                    self.seen.push(line);
                    if let Some(value) = found {
                        return value;
                    }
                }
                Err(e) => panic!(
                    "kubectl watch: no line with {what} ({e}); lines so far: {:#?}; stderr: {}",
                    self.seen,
                    std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
                ),
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command's stdout and stderr, for failure messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A free port on 127.0.0.1 (bound, then released for the caller to use).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// `<prefix>-<hex>`: a name no other test of this process, or of another running beside it, uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}-{:x}",
        (std::process::id() << 8) ^ (nanos >> 8) ^ n
    )
}

/// The kubectl to test with: `$KUBECTL`, or the one on the PATH.
pub fn kubectl_bin() -> PathBuf {
    std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}
