//! What the runtime, attach and kubelet-server tests share: a busybox-static rootfs, a runtime with a root of its own,
//! unique ids, and cleanup of the containers a test made.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_agent::runtime::{ContainerConfig, Runtime, RuntimeConfig};

/// The cgroup parent of every test container.
pub const CGROUP_PARENT: &str = "/berth-test";
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A busybox-static rootfs (read-only: it is a lowerdir), made once in cargo's scratch directory for tests
/// and reused by later runs.
pub fn rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("busybox-rootfs");
        if dir.join("bin/sh").exists() {
            return dir;
        }
        let busybox = Path::new("/bin/busybox");
        if !busybox.exists() {
            let status = Command::new("apt-get")
                .args(["install", "-y", "-qq", "busybox-static"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .expect("apt-get");
            assert!(status.success(), "installing busybox-static failed");
        }
        let binary = fs::read(busybox).unwrap();
        assert!(
            !binary.windows(14).any(|w| w == b"/lib64/ld-linu"),
            "/bin/busybox is dynamically linked: install busybox-static"
        );
        let building = dir.with_extension(std::process::id().to_string());
        let _ = fs::remove_dir_all(&building);
        for sub in ["bin", "dev", "proc", "sys", "tmp", "etc", "root"] {
            fs::create_dir_all(building.join(sub)).unwrap();
        }
        fs::copy(busybox, building.join("bin/busybox")).unwrap();
        let list = Command::new(busybox).arg("--list").output().unwrap();
        for applet in String::from_utf8(list.stdout).unwrap().lines() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", building.join("bin").join(applet)).unwrap();
            }
        }
        fs::write(
            building.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/tmp:/bin/sh\n",
        )
        .unwrap();
        fs::write(building.join("etc/group"), "root:x:0:\nuser:x:1000:\n").unwrap();
        // Tests run in parallel: the first rename wins, the others drop their copy.
        if fs::rename(&building, &dir).is_err() {
            let _ = fs::remove_dir_all(&building);
        }
        dir
    })
}

/// `berth-shim`, or `$BERTH_SHIM` (e.g. `target/debug/berth`).
pub fn shim_program() -> PathBuf {
    std::env::var_os("BERTH_SHIM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_berth-shim")))
}

/// A runtime with a root of its own (short: the socket path must fit in 108 bytes).
pub fn runtime() -> (Runtime, tempfile::TempDir) {
    let root = tempfile::Builder::new()
        .prefix("bra")
        .tempdir_in("/tmp")
        .unwrap();
    let mut config = RuntimeConfig::new(root.path()).unwrap();
    config.shim_program = shim_program();
    config.cgroup_parent = PathBuf::from(CGROUP_PARENT);
    (Runtime::new(config).unwrap(), root)
}

pub fn unique(name: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn container(name: &str, script: &str) -> ContainerConfig {
    ContainerConfig::new(
        unique(name),
        vec![rootfs().to_path_buf()],
        vec!["sh".into(), "-c".into(), script.into()],
    )
}

/// Removes the containers it names when the test ends, passed or failed.
pub struct Cleanup {
    pub runtime: Runtime,
    pub ids: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let runtime = self.runtime.clone();
        let ids = std::mem::take(&mut self.ids);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                for id in ids {
                    let _ = runtime.remove(&id).await;
                }
            });
        })
        .join()
        .unwrap();
    }
}

/// Polls `check` every 20 ms until it gives a value, failing the test after [`DEADLINE`].
pub async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Collects what a descriptor yields, on a thread of its own, until EOF (or EIO, the end of a PTY).
#[derive(Clone)]
pub struct Collector(std::sync::Arc<std::sync::Mutex<(String, bool)>>);

impl Collector {
    pub fn new(fd: std::os::fd::OwnedFd) -> Self {
        let shared = std::sync::Arc::new(std::sync::Mutex::new((String::new(), false)));
        let writer = shared.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut file = fs::File::from(fd);
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = file.read(&mut buf) {
                writer.lock().unwrap().0 += &String::from_utf8_lossy(&buf[..n]);
            }
            writer.lock().unwrap().1 = true;
        });
        Self(shared)
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap().0.clone()
    }

    pub fn ended(&self) -> bool {
        self.0.lock().unwrap().1
    }

    /// Waits until the text contains `needle`.
    pub async fn wait_for(&self, needle: &str) -> String {
        eventually(&format!("{needle:?} in {:?}", self.text()), || {
            let text = self.text();
            text.contains(needle).then_some(text)
        })
        .await
    }
}

/// Writes all of `data` to a descriptor (a pipe or a PTY master, blocking or not).
pub fn write_fd(fd: &std::os::fd::OwnedFd, data: &[u8]) {
    let mut rest = data;
    let deadline = Instant::now() + DEADLINE;
    while !rest.is_empty() {
        match nix::unistd::write(fd, rest) {
            Ok(n) => rest = &rest[n..],
            Err(nix::errno::Errno::EAGAIN) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(err) => panic!("writing to the container: {err}"),
        }
    }
}
