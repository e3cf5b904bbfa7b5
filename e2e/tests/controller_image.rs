//! The Stack controller's container image (images/berth, `make image-berth`): built by scripts/images.sh (here
//! from the debug binary the other tests run; `make image-berth` packs the release one), pushed to a registry of the test's own, pulled back and unpacked with umoci, and run
//! with runc the way config/manager's Deployment runs it: uid and gid 65532, read-only root filesystem, no
//! capabilities, no new privileges. `berth controller --help` answers, and `berth controller` against
//! `berth apiserver` (the host network namespace, the kubeconfig mounted read-only) serves /healthz and /readyz
//! and takes its leader Lease.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_e2e::{Server, wait_for};
use serde_json::{Value, json};

/// How long building the image may take: the shared base layer's debootstrap on a cold cache (seconds when cached).
const BUILD_DEADLINE: Duration = Duration::from_secs(900);
/// How long one container, pull or kubectl step may take.
const DEADLINE: Duration = Duration::from_secs(60);
/// Where the container finds its kubeconfig.
const KUBECONFIG_IN_CONTAINER: &str = "/var/run/berth/kubeconfig";
/// The version the image is tagged with: the workspace's, which the berth crate shares.
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn images_script() -> PathBuf {
    Server::repo_root().join("scripts/images.sh")
}

/// A name no other test (or earlier run) uses.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .subsec_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// Waits for a child with a deadline, killing it when the deadline passes.
fn wait_child(mut child: Child, what: &str, deadline: Duration) -> Output {
    let start = Instant::now();
    loop {
        match child.try_wait().expect("polling a child") {
            Some(_) => return child.wait_with_output().expect("collecting its output"),
            None if start.elapsed() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not finish within {deadline:?}");
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let out = wait_child(child, &format!("{program} {}", args.join(" ")), DEADLINE);
    assert!(
        out.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The registry scripts/images.sh starts for this test, stopped on drop.
struct Registry {
    addr: String,
    dir: tempfile::TempDir,
}

impl Registry {
    fn script(&self, command: &str) -> Command {
        let mut script = Command::new(images_script());
        script
            .arg(command)
            .env("BERTH_REGISTRY", &self.addr)
            .env("BERTH_REGISTRY_DIR", self.dir.path())
            // The debug binary the other tests run: a release build here would cost CI minutes, and the recipe
            // packs whatever binary it is given the same way.
            .env("BERTH_IMAGE_BINARY", berth_e2e::berth_bin())
            .stdin(Stdio::null());
        script
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.script("stop").stdout(Stdio::null()).status();
    }
}

/// `make image-berth` against a registry of the test's own. Fails when debootstrap cannot reach Debian (the
/// script's exit code 3): a test that cannot run must not count as passed.
fn build_and_push_image() -> Registry {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let registry = Registry {
        addr: format!("127.0.0.1:{port}"),
        dir: tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .expect("a registry directory"),
    };
    let start = Instant::now();
    let child = registry
        .script("berth")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running scripts/images.sh berth");
    let out = wait_child(child, "scripts/images.sh berth", BUILD_DEADLINE);
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(
        out.status.code(),
        Some(3),
        "the controller image cannot be built here: debootstrap cannot reach Debian's mirror (the machine \
         needs Debian's archive, as `make image-berth` does):\n{log}"
    );
    assert!(
        out.status.success(),
        "scripts/images.sh berth failed:\n{log}"
    );
    eprintln!("{log}(in {:?})", start.elapsed());
    registry
}

/// The image pulled back from the registry and unpacked into a runtime bundle, with the containers run from it;
/// all removed on drop.
struct Bundle {
    dir: tempfile::TempDir,
    runc_root: PathBuf,
    containers: Vec<String>,
}

impl Bundle {
    fn pull(registry: &Registry, reference: &str) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("berth-image-")
            .tempdir()
            .expect("a scratch directory");
        let layout = dir.path().join("oci");
        run_ok(
            "skopeo",
            &[
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                &format!("docker://{}/{reference}", registry.addr),
                &format!("oci:{}:berth", layout.display()),
            ],
        );
        run_ok(
            "umoci",
            &[
                "unpack",
                "--image",
                &format!("{}:berth", layout.display()),
                &dir.path().join("bundle").to_string_lossy(),
            ],
        );
        // The bundle is all the rest needs.
        fs::remove_dir_all(&layout).expect("removing the pulled layout");
        Bundle {
            runc_root: dir.path().join("runc"),
            dir,
            containers: Vec::new(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    /// umoci's runtime configuration: the image's entrypoint, environment and user.
    fn image_config(&self) -> Value {
        let pristine = self.dir.path().join("image-config.json");
        if !pristine.exists() {
            fs::copy(self.path().join("config.json"), &pristine).expect("umoci wrote config.json");
        }
        serde_json::from_slice(&fs::read(&pristine).expect("reading config.json"))
            .expect("config.json is JSON")
    }

    /// Writes the runtime configuration for one container: the image's, locked down as `security` says, in
    /// the host's network namespace, with `args` and `mounts` added.
    fn configure(&self, security: &Security, args: &[String], env: &[String], mounts: &[Value]) {
        let mut config = self.image_config();
        let process = &mut config["process"];
        process["terminal"] = json!(false);
        process["user"] = json!({"uid": security.uid, "gid": security.gid});
        process["noNewPrivileges"] = json!(security.no_new_privileges);
        let caps: Vec<&str> = Vec::new();
        process["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps, "ambient": caps
        });
        let mut argv = process["args"]
            .as_array()
            .expect("the image has an entrypoint")[..1]
            .to_vec();
        argv.extend(args.iter().map(|a| json!(a)));
        process["args"] = json!(argv);
        process["env"]
            .as_array_mut()
            .expect("the image has an environment")
            .extend(env.iter().map(|e| json!(e)));
        config["root"]["readonly"] = json!(security.read_only_root);
        config["mounts"]
            .as_array_mut()
            .expect("the config lists mounts")
            .extend(mounts.iter().cloned());
        config["linux"]["namespaces"]
            .as_array_mut()
            .expect("the config lists namespaces")
            .retain(|n| n["type"] != "network");
        fs::write(
            self.path().join("config.json"),
            serde_json::to_vec(&config).expect("serializable"),
        )
        .expect("writing config.json");
    }

    fn runc(&self) -> Command {
        let mut runc = Command::new("runc");
        runc.arg("--root").arg(&self.runc_root);
        runc
    }

    /// Runs a container to its end: its output.
    fn run(&mut self, name: &str) -> Output {
        let id = unique(name);
        self.containers.push(id.clone());
        let child = self
            .runc()
            .args(["run", &id])
            .current_dir(self.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running runc");
        wait_child(child, &format!("the container {name}"), DEADLINE)
    }

    /// Starts a container in the background, its output in `log`: its id.
    fn start(&mut self, name: &str, log: &Path) -> String {
        let id = unique(name);
        self.containers.push(id.clone());
        let log = fs::File::create(log).expect("a log file");
        let child = self
            .runc()
            .args(["run", "--detach", &id])
            .current_dir(self.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .spawn()
            .expect("running runc");
        let out = wait_child(child, &format!("runc run --detach {name}"), DEADLINE);
        assert!(out.status.success(), "runc run {name} failed");
        id
    }

    /// The host pid of a running container's process.
    fn pid(&self, id: &str) -> u32 {
        let out = self
            .runc()
            .args(["state", id])
            .output()
            .expect("runc state");
        let state: Value = serde_json::from_slice(&out.stdout).expect("runc state prints JSON");
        state["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .expect("a running container has a pid")
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        for id in &self.containers {
            let _ = self.runc().args(["delete", "--force", id]).output();
        }
    }
}

/// What config/manager's Deployment asks of the controller's container.
struct Security {
    uid: u64,
    gid: u64,
    read_only_root: bool,
    no_new_privileges: bool,
}

/// The controller Deployment of config/manager: its container's arguments, environment and security settings.
fn manager_deployment() -> (Vec<String>, Vec<(String, Value)>, Security) {
    let text = fs::read_to_string(Server::repo_root().join("config/manager/manager.yaml"))
        .expect("reading config/manager/manager.yaml");
    let deployment = text
        .split("\n---\n")
        .map(|doc| serde_yaml::from_str::<Value>(doc).expect("YAML documents"))
        .find(|doc| doc["kind"] == "Deployment")
        .expect("config/manager has a Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args = container["args"]
        .as_array()
        .expect("the container has args")
        .iter()
        .map(|a| a.as_str().expect("string args").to_owned())
        .collect();
    let env = container["env"]
        .as_array()
        .expect("the container has env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("env names").to_owned();
            (
                name,
                e.get("value").cloned().unwrap_or(e["valueFrom"].clone()),
            )
        })
        .collect();
    let context = &container["securityContext"];
    assert_eq!(
        context["capabilities"]["drop"],
        json!(["ALL"]),
        "the Deployment drops every capability"
    );
    let security = Security {
        uid: pod["securityContext"]["runAsUser"]
            .as_u64()
            .expect("runAsUser"),
        gid: pod["securityContext"]["runAsGroup"]
            .as_u64()
            .expect("runAsGroup"),
        read_only_root: context["readOnlyRootFilesystem"] == json!(true),
        no_new_privileges: context["allowPrivilegeEscalation"] == json!(false),
    };
    (args, env, security)
}

/// The status code of `GET path` on a plain HTTP endpoint, or None when it does not answer.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().ok()?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// A field of /proc/PID/status.
fn proc_status(pid: u32, field: &str) -> String {
    let status =
        fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("/proc/{pid}/status has {field}"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn controller_image_runs_locked_down_serves_health_and_takes_the_lease() {
    let registry = build_and_push_image();
    let mut bundle = Bundle::pull(&registry, &format!("berth/berth:{VERSION}"));
    drop(registry);

    // What the image is: the binary as entrypoint, uid 65532, and nothing else to run.
    let image = bundle.image_config();
    assert_eq!(
        image["process"]["args"],
        json!(["/usr/local/bin/berth", "controller"]),
        "{image}"
    );
    assert_eq!(
        image["process"]["user"]["uid"], 65532,
        "{}",
        image["process"]
    );
    assert_eq!(image["process"]["user"]["gid"], 65532);
    let rootfs = bundle.rootfs();
    for shell in ["bin/sh", "usr/bin/sh", "bin/bash", "usr/bin/apt-get"] {
        assert!(!rootfs.join(shell).exists(), "the image carries {shell}");
    }
    assert!(rootfs.join("etc/ssl/certs/ca-certificates.crt").is_file());
    let binary = fs::metadata(rootfs.join("usr/local/bin/berth")).expect("the image has berth");
    assert_eq!(binary.permissions().mode() & 0o777, 0o755);

    let (manager_args, manager_env, security) = manager_deployment();
    assert_eq!((security.uid, security.gid), (65532, 65532));
    assert!(security.read_only_root && security.no_new_privileges);

    // `berth controller --help`, locked down like the Deployment.
    bundle.configure(&security, &["controller".into(), "--help".into()], &[], &[]);
    let help = bundle.run("berth-help");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.status.success(),
        "berth controller --help failed: {text}{}",
        String::from_utf8_lossy(&help.stderr)
    );
    for flag in ["--kubeconfig", "--metrics-addr", "--leader-elect"] {
        assert!(text.contains(flag), "--help names {flag}: {text}");
    }

    // `berth controller` with the Deployment's arguments against `berth apiserver`, the metrics port on a free
    // loopback port instead of 0.0.0.0:8080 (the container shares the host's network namespace).
    let server = Server::start();
    let namespace = "berth-image";
    server.kubectl_ok(&["create", "namespace", namespace]);
    let crds = Server::repo_root().join("crds");
    server.kubectl_ok(&["apply", "-f", &crds.to_string_lossy()]);
    let kubeconfig = bundle.dir.path().join("kubeconfig");
    fs::copy(server.kubeconfig(), &kubeconfig).expect("copying the kubeconfig");
    // Readable by the controller's user only, as a Secret volume with fsGroup would be.
    chown(&kubeconfig, Some(65532), Some(65532)).expect("chown the kubeconfig");
    fs::set_permissions(&kubeconfig, fs::Permissions::from_mode(0o400))
        .expect("chmod the kubeconfig");

    let mut args: Vec<String> = manager_args
        .into_iter()
        .map(|a| {
            if a.starts_with("--metrics-addr=") {
                "--metrics-addr=127.0.0.1:0".into()
            } else {
                a
            }
        })
        .collect();
    assert!(
        args.iter().any(|a| a == "--metrics-addr=127.0.0.1:0"),
        "the Deployment passes --metrics-addr: {args:?}"
    );
    args.push(format!("--kubeconfig={KUBECONFIG_IN_CONTAINER}"));
    let mut env: Vec<String> = manager_env
        .iter()
        .map(|(name, value)| match value {
            // What the Deployment's fieldRef gives the container.
            Value::Object(_) => {
                assert_eq!(value["fieldRef"]["fieldPath"], "metadata.namespace");
                format!("{name}={namespace}")
            }
            value => format!("{name}={}", value.as_str().expect("a string value")),
        })
        .collect();
    env.push("NO_COLOR=1".into());
    let mount = json!({
        "destination": KUBECONFIG_IN_CONTAINER,
        "type": "bind",
        "source": kubeconfig,
        "options": ["bind", "ro"],
    });
    bundle.configure(&security, &args, &env, &[mount]);
    let log_path = bundle.dir.path().join("controller.log");
    let id = bundle.start("berth-controller", &log_path);
    let log = || fs::read_to_string(&log_path).unwrap_or_default();

    // The process runs as the Deployment says.
    let pid = bundle.pid(&id);
    assert_eq!(proc_status(pid, "Uid"), "65532 65532 65532 65532");
    assert_eq!(proc_status(pid, "Gid"), "65532 65532 65532 65532");
    for caps in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(proc_status(pid, caps), "0000000000000000", "{caps}");
    }
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let root = mountinfo
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.get(4) == Some(&"/"))
        .expect("the container has a root mount");
    assert!(
        root[5].split(',').any(|o| o == "ro"),
        "the root filesystem is read-only: {root:?}"
    );

    let addr = wait_for("the controller's metrics address", DEADLINE, || {
        let log = log();
        let line = log.lines().find(|l| l.contains("serving /metrics"))?;
        let addr = line.split("addr=").nth(1)?;
        Some(addr.split_whitespace().next()?.to_owned())
    });
    assert_eq!(http_status(&addr, "/healthz"), Some(200), "{}", log());
    wait_for("/readyz to answer 200", DEADLINE, || {
        (http_status(&addr, "/readyz") == Some(200)).then_some(())
    });
    let lease = wait_for("the leader Lease", DEADLINE, || {
        let out = server.kubectl(&[
            "-n",
            namespace,
            "get",
            "lease",
            "berth-controller",
            "-o",
            "json",
        ]);
        let lease: Value = serde_json::from_slice(&out.stdout).ok()?;
        lease["spec"]["holderIdentity"]
            .as_str()
            .is_some_and(|h| !h.is_empty())
            .then_some(lease)
    });
    eprintln!(
        "the controller in the image holds {}/{} as {}",
        namespace, lease["metadata"]["name"], lease["spec"]["holderIdentity"]
    );
}
