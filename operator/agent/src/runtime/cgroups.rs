//! The host's cgroup hierarchy, as the runtime reads it: OOM-kill counters and, when a shim died before it
//! could delete its container, the leftover cgroup. libcontainer (libcgroups) creates the cgroups and writes
//! the limits; this module only reads and removes. The backend (v1 or v2) is picked once, by [`detect`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, statfs};
use nix::unistd::Pid;

/// Where cgroup filesystems are mounted; libcgroups supports only this root.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup version the host's resource controllers live on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// cgroup v1, "legacy" or "hybrid" (a v2 hierarchy without controllers beside the v1 ones).
    V1,
    /// cgroup v2, the unified hierarchy.
    V2,
}

/// One host's cgroup hierarchy.
pub trait Hierarchy: Send + Sync {
    fn version(&self) -> Version;
    /// How many processes the kernel's OOM killer killed in the cgroup; 0 when the memory controller is absent.
    fn oom_kills(&self, cgroup_path: &Path) -> io::Result<u64>;
    /// The directories the cgroup has, one per hierarchy it exists in.
    fn dirs(&self, cgroup_path: &Path) -> Vec<PathBuf>;
    /// Kills every process left in the cgroup and removes its directories.
    fn kill_and_remove(&self, cgroup_path: &Path) -> io::Result<()> {
        for dir in self.dirs(cgroup_path) {
            kill_all_and_rmdir(&dir)?;
        }
        Ok(())
    }
}

/// Picks the backend for this host: v2 when `/sys/fs/cgroup` is a cgroup2 filesystem, v1 otherwise.
pub fn detect() -> io::Result<Box<dyn Hierarchy>> {
    let root = PathBuf::from(CGROUP_ROOT);
    let stat = statfs(&root).map_err(io::Error::from)?;
    Ok(if stat.filesystem_type() == CGROUP2_SUPER_MAGIC {
        Box::new(V2 { root })
    } else {
        Box::new(V1 { root })
    })
}

/// cgroup v1: one hierarchy per controller under `/sys/fs/cgroup/<controller>`.
pub struct V1 {
    root: PathBuf,
}

impl Hierarchy for V1 {
    fn version(&self) -> Version {
        Version::V1
    }

    fn oom_kills(&self, cgroup_path: &Path) -> io::Result<u64> {
        let file = join(&self.root.join("memory"), cgroup_path).join("memory.oom_control");
        read_counter(&file, "oom_kill")
    }

    fn dirs(&self, cgroup_path: &Path) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .flatten()
            // `cpu` and `cpuacct` are often symlinks to `cpu,cpuacct`; `unified` is the controller-less v2 tree.
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) && e.file_name() != "unified")
            .map(|e| join(&e.path(), cgroup_path))
            .filter(|dir| dir.is_dir())
            .collect()
    }
}

/// cgroup v2: one unified hierarchy.
pub struct V2 {
    root: PathBuf,
}

impl Hierarchy for V2 {
    fn version(&self) -> Version {
        Version::V2
    }

    fn oom_kills(&self, cgroup_path: &Path) -> io::Result<u64> {
        read_counter(
            &join(&self.root, cgroup_path).join("memory.events"),
            "oom_kill",
        )
    }

    fn dirs(&self, cgroup_path: &Path) -> Vec<PathBuf> {
        let dir = join(&self.root, cgroup_path);
        if dir.is_dir() { vec![dir] } else { Vec::new() }
    }

    fn kill_and_remove(&self, cgroup_path: &Path) -> io::Result<()> {
        for dir in self.dirs(cgroup_path) {
            // cgroup.kill (Linux 5.14) kills the whole subtree at once; the per-pid loop covers older kernels.
            let _ = fs::write(dir.join("cgroup.kill"), "1");
            kill_all_and_rmdir(&dir)?;
        }
        Ok(())
    }
}

/// `root` + `cgroup_path` with the latter's leading `/` ignored (cgroup paths are absolute in the hierarchy).
fn join(root: &Path, cgroup_path: &Path) -> PathBuf {
    root.join(cgroup_path.strip_prefix("/").unwrap_or(cgroup_path))
}

/// A counter from a flat-keyed cgroup file (`memory.events`, `memory.oom_control`); 0 when the file is absent.
fn read_counter(file: &Path, key: &str) -> io::Result<u64> {
    match fs::read_to_string(file) {
        Ok(text) => Ok(parse_flat_keyed(&text, key).unwrap_or(0)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(err) => Err(err),
    }
}

pub(crate) fn parse_flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn kill_all_and_rmdir(dir: &Path) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let procs = match fs::read_to_string(dir.join("cgroup.procs")) {
            Ok(procs) => procs,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err),
        };
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            // EBUSY while killed processes are still exiting.
            Err(err) if Instant::now() >= deadline => return Err(err),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_is_read_from_v1_oom_control() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_flat_keyed(text, "oom_kill"), Some(3));
    }

    #[test]
    fn oom_kill_is_read_from_v2_memory_events() {
        let text = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_flat_keyed(text, "oom_kill"), Some(1));
        assert_eq!(parse_flat_keyed(text, "oom"), Some(2));
        assert_eq!(parse_flat_keyed(text, "missing"), None);
    }

    #[test]
    fn v2_counters_come_from_memory_events_under_the_cgroup() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("berth/c1");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("memory.events"), "max 4\noom 1\noom_kill 1\n").unwrap();
        let v2 = V2 {
            root: root.path().to_path_buf(),
        };
        assert_eq!(v2.oom_kills(Path::new("/berth/c1")).unwrap(), 1);
        assert_eq!(v2.oom_kills(Path::new("/berth/absent")).unwrap(), 0);
        assert_eq!(v2.dirs(Path::new("/berth/c1")), vec![dir]);
    }

    #[test]
    fn v1_counters_come_from_the_memory_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("memory/berth/c1");
        fs::create_dir_all(&dir).unwrap();
        fs::create_dir_all(root.path().join("pids/berth/c1")).unwrap();
        fs::create_dir_all(root.path().join("unified/berth/c1")).unwrap();
        fs::write(
            dir.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        let v1 = V1 {
            root: root.path().to_path_buf(),
        };
        assert_eq!(v1.oom_kills(Path::new("/berth/c1")).unwrap(), 2);
        let mut dirs = v1.dirs(Path::new("/berth/c1"));
        dirs.sort();
        assert_eq!(dirs, vec![dir, root.path().join("pids/berth/c1")]);
    }
}
