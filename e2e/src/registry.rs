//! A real OCI registry for end-to-end tests: Debian's `docker-registry` on a free loopback port with its own
//! config and storage directory, filled with a busybox image built from busybox-static by `umoci` and pushed
//! by `skopeo`. Killed, and its storage removed, on drop. `scripts/test-deps.sh` installs the tools.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The busybox applets the test image links (`/bin/<applet>` → `busybox`).
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "dd", "env", "true", "false", "ls", "id", "test", "head",
    "touch", "date", "printf", "kill", "ps", "mkdir", "grep", "wc", "rm",
];

/// A running `docker-registry`; see the module docs.
pub struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry on a free loopback port, installing the tools first if they are missing (as root).
    pub fn start() -> Registry {
        ensure_tools();
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .expect("creating the registry's directory");
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {root}/storage\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            root = dir.path().display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("writing the registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting docker-registry");
        let mut registry = Registry { child, port, dir };
        registry.wait_ready();
        registry
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Builds the busybox image and pushes it as `<host>/<name>`; returns that reference.
    pub fn push_busybox(&self, name: &str) -> String {
        let layout = self.busybox_layout();
        let reference = format!("{}/{name}", self.host());
        run(Command::new("skopeo").args([
            "copy",
            "--insecure-policy",
            "--dest-tls-verify=false",
            &format!("oci:{}:latest", layout.display()),
            &format!("docker://{reference}"),
        ]));
        reference
    }

    /// busybox-static with its applets as symbolic links, `/bin/sh` as the command; built once per registry.
    fn busybox_layout(&self) -> PathBuf {
        let work = self.dir.path().join("build");
        let layout = work.join("layout");
        if layout.exists() {
            return layout;
        }
        let stage = work.join("stage");
        std::fs::create_dir_all(stage.join("bin")).expect("creating the image's staging directory");
        std::fs::copy("/bin/busybox", stage.join("bin/busybox")).expect("copying busybox");
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", stage.join("bin").join(applet))
                .expect("linking an applet");
        }
        let image = format!("{}:latest", layout.display());
        run(Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout));
        run(Command::new("umoci").args(["new", "--image", &image]));
        run(Command::new("umoci")
            .args(["insert", "--image", &image])
            .arg(stage.join("bin"))
            .arg("/bin"));
        run(Command::new("umoci").args([
            "config",
            "--image",
            &image,
            "--config.cmd",
            "/bin/sh",
            "--config.env",
            "FROM_IMAGE=image-value",
        ]));
        layout
    }

    /// Polls `/v2/` until the registry answers, within a deadline.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut answer = String::new();
                if stream.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").is_ok()
                    && stream.read_to_string(&mut answer).is_ok()
                    && answer.starts_with("HTTP/1.")
                {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on port {} within 30 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// docker-registry, skopeo, umoci and a static busybox, installed by `scripts/test-deps.sh` when missing.
fn ensure_tools() {
    let present = || {
        ["docker-registry", "skopeo", "umoci"].iter().all(|tool| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        }) && Path::new("/bin/busybox").exists()
    };
    if present() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-deps.sh");
    let installed = Command::new("bash")
        .arg(&script)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        installed && present(),
        "docker-registry, skopeo, umoci and busybox-static are needed: run scripts/test-deps.sh as root"
    );
}

fn run(command: &mut Command) {
    let output = command.output().expect("running a tool");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("finding a free loopback port")
}
