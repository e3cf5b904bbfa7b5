//! A real OCI registry for tests: Debian's `docker-registry` on a free loopback port with its own config and
//! storage directory, optionally behind htpasswd auth, filled by `skopeo` from OCI layouts built by `umoci`
//! (among them a busybox image from busybox-static). Killed, and its storage removed, on drop.
//! `scripts/test-deps.sh` installs the tools.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The busybox applets [`Registry::push_busybox`]'s image links (`/bin/<applet>` → `busybox`).
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "dd", "env", "true", "false", "ls", "id", "test", "head",
    "touch", "date", "printf", "kill", "ps", "mkdir", "grep", "wc", "rm",
];

/// A running `docker-registry`; see the module docs.
pub struct Registry {
    child: Child,
    port: u16,
    /// `user:password` when the registry asks for them.
    credentials: Option<String>,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry that anyone may pull from and push to, installing the tools first if they are
    /// missing (as root).
    pub fn start() -> Registry {
        Self::launch(None)
    }

    /// Starts a registry that admits `user` with `password` only (htpasswd); anonymous requests get 401.
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Self::launch(Some((user, password)))
    }

    fn launch(auth: Option<(&str, &str)>) -> Registry {
        assert!(
            tools_installed(),
            "docker-registry, skopeo, umoci and busybox-static are needed: run scripts/test-deps.sh as root"
        );
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .expect("creating the registry's directory");
        let root = dir.path().display();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {root}/storage\n\
             http:\n  addr: 127.0.0.1:{port}\n"
        );
        if let Some((user, password)) = auth {
            // The lowest bcrypt cost: the registry checks the password on every request.
            let hash = bcrypt::hash(password, 4).expect("hashing the registry password");
            std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n"))
                .expect("writing the registry's htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {root}/htpasswd\n"
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("writing the registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting docker-registry");
        let mut registry = Registry {
            child,
            port,
            credentials: auth.map(|(user, password)| format!("{user}:{password}")),
            dir,
        };
        registry.wait_ready();
        registry
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes the image `tag` of the OCI layout `layout` as `<host>/<name>` (every platform of an index, with
    /// the registry's credentials); returns that reference.
    pub fn push_layout(&self, layout: &Path, tag: &str, name: &str) -> String {
        let reference = format!("{}/{name}", self.host());
        let mut skopeo = Command::new("skopeo");
        skopeo.args([
            "copy",
            "--all",
            "--insecure-policy",
            "--dest-tls-verify=false",
        ]);
        if let Some(credentials) = &self.credentials {
            skopeo.args(["--dest-creds", credentials]);
        }
        run(skopeo.args([
            format!("oci:{}:{tag}", layout.display()),
            format!("docker://{reference}"),
        ]));
        reference
    }

    /// Builds the busybox image and pushes it as `<host>/<name>`; returns that reference.
    pub fn push_busybox(&self, name: &str) -> String {
        let layout = self.busybox_layout();
        self.push_layout(&layout, "latest", name)
    }

    /// Kills the registry: pulls fail from now on. Dropping it does as much.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// busybox-static with its applets as symbolic links, `/bin/sh` as the command; built once per registry.
    fn busybox_layout(&self) -> PathBuf {
        let work = self.dir.path().join("build");
        let layout = work.join("layout");
        if layout.exists() {
            return layout;
        }
        let bin = stage_busybox(&work.join("stage"), APPLETS);
        UmociImage::create(&layout).insert(&bin, "/bin").config(&[
            "--config.cmd",
            "/bin/sh",
            "--config.env",
            "FROM_IMAGE=image-value",
        ]);
        layout
    }

    /// Polls `/v2/` until the registry answers (401 without credentials where it asks for them), within a
    /// deadline.
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
        self.stop();
    }
}

/// An OCI image layout that umoci builds, its image tagged `latest`: one layer a call to `insert`,
/// `insert_opaque` or `whiteout`.
pub struct UmociImage {
    image: String,
}

impl UmociImage {
    /// Creates the layout at `dir` with an empty image.
    pub fn create(dir: &Path) -> UmociImage {
        run(Command::new("umoci").args(["init", "--layout"]).arg(dir));
        let layout = UmociImage {
            image: format!("{}:latest", dir.display()),
        };
        layout.umoci("new", &[]);
        layout
    }

    /// A layer that adds `source` (a file or a directory) at `target`.
    pub fn insert(&self, source: &Path, target: &str) -> &Self {
        self.umoci("insert", &[source.as_os_str(), target.as_ref()])
    }

    /// A layer that replaces the directory `target` with `source`: an opaque directory.
    pub fn insert_opaque(&self, source: &Path, target: &str) -> &Self {
        self.umoci(
            "insert",
            &["--opaque".as_ref(), source.as_os_str(), target.as_ref()],
        )
    }

    /// A layer that removes `target`: a whiteout.
    pub fn whiteout(&self, target: &str) -> &Self {
        self.umoci("insert", &["--whiteout".as_ref(), target.as_ref()])
    }

    /// Sets the image's configuration with `umoci config` flags (`--config.cmd`, `--config.env`, …).
    pub fn config(&self, flags: &[&str]) -> &Self {
        let flags: Vec<&OsStr> = flags.iter().map(OsStr::new).collect();
        self.umoci("config", &flags)
    }

    fn umoci(&self, command: &str, args: &[&OsStr]) -> &Self {
        run(Command::new("umoci")
            .args([command, "--image", &self.image])
            .args(args));
        self
    }
}

/// busybox-static as `<stage>/bin/busybox` with `applets` as symbolic links to it; returns `<stage>/bin`.
pub fn stage_busybox(stage: &Path, applets: &[&str]) -> PathBuf {
    let bin = stage.join("bin");
    std::fs::create_dir_all(&bin).expect("creating the image's staging directory");
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("copying busybox");
    for applet in applets {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("linking an applet");
    }
    bin
}

/// Whether docker-registry, skopeo, umoci and a static busybox are here, after `scripts/test-deps.sh` has
/// installed what was missing (it can only as root). Tests that can do without skip when this is false.
pub fn tools_installed() -> bool {
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
        return true;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-deps.sh");
    let installed = Command::new("bash")
        .arg(&script)
        .status()
        .is_ok_and(|s| s.success());
    installed && present()
}

/// Runs a tool (umoci, skopeo) to completion; panics with its output when it fails.
pub fn run(command: &mut Command) {
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
