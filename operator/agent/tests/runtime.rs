//! The runtime against the real kernel: busybox-static containers through the shim and libcontainer, as
//! root. Every test uses ids of its own, waits with deadlines, and removes what it made.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_agent::runtime::{
    CgroupVersion, ContainerState, Error, Mount, Runtime, RuntimeConfig, Status, netns,
};
use nix::sys::signal::kill;
use nix::unistd::Pid;

mod support;
use support::*;

fn log_text(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// The content of each CRI record of one stream.
fn lines(log: &str, stream: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(4, ' ');
            let _time = fields.next()?;
            (fields.next()? == stream).then(|| {
                let _tag = fields.next();
                fields.next().unwrap_or("").to_string()
            })
        })
        .collect()
}

async fn wait_for_log(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = log_text(path);
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never showed in the log:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

fn cgroup_dirs(runtime: &Runtime, id: &str) -> Vec<PathBuf> {
    let path = runtime.cgroup_path(id);
    let relative = path.strip_prefix("/").unwrap();
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = Vec::new();
    match runtime.cgroup_version() {
        CgroupVersion::V2 => dirs.push(root.join(relative)),
        CgroupVersion::V1 => {
            for controller in ["memory", "pids", "cpu", "devices", "freezer"] {
                dirs.push(root.join(controller).join(relative));
            }
        }
    }
    dirs.into_iter().filter(|d| d.exists()).collect()
}

#[tokio::test]
async fn echo_is_logged_in_cri_format_and_the_exit_code_recorded() {
    let (rt, _root) = runtime();
    let config = container(
        "echo",
        "echo hi; echo oops >&2; printf 'no newline'; exit 3",
    );
    let id = config.id.clone();
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: vec![id.clone()],
    };
    let handle = rt.create(config).await.unwrap();
    assert!(handle.pid > 0);
    let exit = tokio::time::timeout(DEADLINE, rt.wait(&id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((exit.code, exit.signal, exit.oom_killed), (3, None, false));
    let log = log_text(&handle.log_path);
    assert_eq!(lines(&log, "stdout"), ["hi", "no newline"], "{log}");
    assert_eq!(lines(&log, "stderr"), ["oops"], "{log}");
    let first = log.lines().next().unwrap();
    assert!(
        first
            .split(' ')
            .next()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok(),
        "{first}"
    );
    assert!(log.contains(" stdout F hi\n"), "{log}");
    match rt.state(&id).await.unwrap().status {
        Status::Exited(recorded) => assert_eq!(recorded, exit),
        other => panic!("state after exit: {other:?}"),
    }
    assert!(
        !alive(handle.shim_pid) || wait_gone(handle.shim_pid).await,
        "the shim outlived its container"
    );
    assert!(
        cgroup_dirs(&rt, &id).is_empty(),
        "the cgroup outlived the container"
    );
    rt.remove(&id).await.unwrap();
    assert!(!handle.state_dir.exists());
    assert!(matches!(rt.state(&id).await, Err(Error::NotFound(_))));
}

async fn wait_gone(pid: i32) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

#[tokio::test]
async fn stop_sends_sigterm_then_sigkill_after_the_grace_period() {
    let (rt, _root) = runtime();
    // pid 1 of a pid namespace ignores signals it has no handler for: SIGTERM does nothing to `sleep`.
    let stubborn = container("stubborn", "exec sleep 1000");
    let polite = container(
        "polite",
        "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done",
    );
    let ids = vec![stubborn.id.clone(), polite.id.clone()];
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: ids.clone(),
    };
    rt.create(stubborn).await.unwrap();
    let polite = rt.create(polite).await.unwrap();
    wait_for_log(&polite.log_path, "ready").await;

    let grace = Duration::from_millis(800);
    let started = Instant::now();
    let exit = rt.stop(&ids[0], grace).await.unwrap();
    assert!(
        started.elapsed() >= grace,
        "SIGKILL came before the grace period ended"
    );
    assert_eq!((exit.code, exit.signal), (137, Some(9)));

    let started = Instant::now();
    let exit = rt.stop(&ids[1], Duration::from_secs(30)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "SIGTERM was not delivered"
    );
    assert_eq!((exit.code, exit.signal), (7, None));
    // Stopping a stopped container answers with the recorded exit.
    assert_eq!(rt.stop(&ids[1], grace).await.unwrap(), exit);
}

#[tokio::test]
async fn a_process_over_the_memory_limit_is_oom_killed_and_reported() {
    let (rt, _root) = runtime();
    // `tail` keeps the last lines; /dev/zero has no newline, so its one line grows past the limit.
    let mut config = container("oom", "head -c 200m /dev/zero | tail; echo survived");
    config.resources.memory_limit = Some(32 << 20);
    let id = config.id.clone();
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: vec![id.clone()],
    };
    let handle = rt.create(config).await.unwrap();
    let exit = tokio::time::timeout(DEADLINE, rt.wait(&id))
        .await
        .unwrap()
        .unwrap();
    assert!(
        exit.oom_killed,
        "not reported as OOM-killed: {exit:?}\n{}",
        log_text(&handle.log_path)
    );

    let mut config = container(
        "no-oom",
        "head -c 1m /dev/zero | tail >/dev/null; echo fine",
    );
    config.resources.memory_limit = Some(32 << 20);
    let id = config.id.clone();
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: vec![id.clone()],
    };
    rt.create(config).await.unwrap();
    let exit = tokio::time::timeout(DEADLINE, rt.wait(&id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((exit.code, exit.oom_killed), (0, false));
}

#[tokio::test]
async fn cgroup_limits_are_applied() {
    let (rt, _root) = runtime();
    let mut config = container(
        "pids",
        "(i=0; while [ $i -lt 20 ]; do sleep 30 & i=$((i+1)); done); echo spawned; exec sleep 30",
    );
    config.resources.pids_limit = Some(8);
    config.resources.memory_limit = Some(64 << 20);
    config.resources.cpu_shares = Some(512);
    config.resources.cpu_quota = Some(50_000);
    let id = config.id.clone();
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: vec![id.clone()],
    };
    let handle = rt.create(config).await.unwrap();
    let log = wait_for_log(&handle.log_path, "spawned").await;
    assert!(log.contains("can't fork"), "no fork was refused:\n{log}");

    let path = rt.cgroup_path(&id);
    let path = path.strip_prefix("/").unwrap();
    let read = |file: &str| {
        fs::read_to_string(Path::new("/sys/fs/cgroup").join(file))
            .unwrap()
            .trim()
            .to_string()
    };
    match rt.cgroup_version() {
        CgroupVersion::V1 => {
            let pids = Path::new("pids").join(path);
            assert_eq!(read(pids.join("pids.max").to_str().unwrap()), "8");
            let current: u32 = read(pids.join("pids.current").to_str().unwrap())
                .parse()
                .unwrap();
            assert!(current <= 8, "{current} processes under a limit of 8");
            let memory = Path::new("memory").join(path).join("memory.limit_in_bytes");
            assert_eq!(read(memory.to_str().unwrap()), (64u64 << 20).to_string());
            let cpu = Path::new("cpu").join(path);
            assert_eq!(read(cpu.join("cpu.shares").to_str().unwrap()), "512");
            assert_eq!(
                read(cpu.join("cpu.cfs_quota_us").to_str().unwrap()),
                "50000"
            );
            assert_eq!(
                read(cpu.join("cpu.cfs_period_us").to_str().unwrap()),
                "100000"
            );
        }
        CgroupVersion::V2 => {
            assert_eq!(read(path.join("pids.max").to_str().unwrap()), "8");
            assert_eq!(
                read(path.join("memory.max").to_str().unwrap()),
                (64u64 << 20).to_string()
            );
            assert_eq!(read(path.join("cpu.max").to_str().unwrap()), "50000 100000");
        }
    }
}

/// The value of a `Key:\tvalue` line of /proc/<pid>/status as the container printed it.
fn status_field<'a>(lines: &'a [String], key: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {lines:?}"))
}

#[tokio::test]
async fn a_container_is_isolated_by_namespaces_capabilities_and_seccomp() {
    let (rt, _root) = runtime();
    let mut config = container(
        "isolated",
        "hostname; echo pid=$$; readlink /proc/self/ns/net; cat /proc/self/mountinfo; \
         cat /proc/self/status; unshare -U true && echo unshared || echo unshare-refused; \
         cat /proc/kcore >/dev/null 2>&1 && echo kcore-readable || echo kcore-masked; \
         echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo procsys-writable || echo procsys-readonly; \
         for f in /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory.max; do \
           [ -e $f ] && { echo max > $f 2>/dev/null && echo cgroup-writable || echo cgroup-readonly; }; done; true",
    );
    config.hostname = Some("boxed".into());
    let id = config.id.clone();
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: vec![id.clone()],
    };
    let handle = rt.create(config).await.unwrap();
    let exit = tokio::time::timeout(DEADLINE, rt.wait(&id))
        .await
        .unwrap()
        .unwrap();
    let log = log_text(&handle.log_path);
    assert_eq!(exit.code, 0, "{log}");
    let out = lines(&log, "stdout");
    assert_eq!(out[0], "boxed");
    assert_eq!(out[1], "pid=1");
    let host_net = fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(
        out[2],
        host_net.to_str().unwrap(),
        "the container shares the host's network namespace"
    );
    let mountinfo: Vec<&String> = out.iter().filter(|l| l.contains(" - ")).collect();
    assert!(
        mountinfo
            .iter()
            .any(|l| l.split(' ').nth(4) == Some("/") && l.contains(" - overlay ")),
        "{mountinfo:?}"
    );
    let mount_points: Vec<&str> = mountinfo
        .iter()
        .filter_map(|l| l.split(' ').nth(4))
        .collect();
    assert!(
        !mount_points
            .iter()
            .any(|p| p.starts_with("/work") || p.starts_with("/tmp")),
        "host mounts leak: {mount_points:?}"
    );
    // Docker's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE
    // NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
    let expected_caps = match rt.cgroup_version() {
        CgroupVersion::V1 => "00000000a80425fb",
        CgroupVersion::V2 => "00000000a80425fb",
    };
    let caps = status_field(&out, "CapEff");
    if rt.cgroup_version() == CgroupVersion::V1 {
        assert_eq!(caps, expected_caps);
    } else {
        assert_eq!(
            u64::from_str_radix(caps, 16).unwrap(),
            0xa80425fb & !(1 << 27)
        );
    }
    assert_eq!(status_field(&out, "CapBnd"), caps);
    assert_eq!(status_field(&out, "CapInh"), "0000000000000000");
    assert_eq!(status_field(&out, "NoNewPrivs"), "1");
    assert_eq!(status_field(&out, "Seccomp"), "2");
    assert!(out.contains(&"unshare-refused".to_string()), "{out:?}");
    assert!(out.contains(&"kcore-masked".to_string()), "{out:?}");
    assert!(out.contains(&"procsys-readonly".to_string()), "{out:?}");
    assert!(out.contains(&"cgroup-readonly".to_string()), "{out:?}");
    assert!(!out.contains(&"cgroup-writable".to_string()), "{out:?}");
}

#[tokio::test]
async fn security_context_fields_are_honoured() {
    let (rt, _root) = runtime();
    let volume_ro = tempfile::tempdir().unwrap();
    let volume_rw = tempfile::tempdir().unwrap();
    fs::write(volume_ro.path().join("config"), "from-host\n").unwrap();
    let mut config = container(
        "secctx",
        "id -u; id -g; grep CapEff /proc/self/status; cat /ro/config; \
         touch /ro/x 2>/dev/null && echo ro-writable || echo ro-refused; \
         echo written > /rw/out && echo rw-ok; \
         touch /newfile 2>/dev/null && echo root-writable || echo root-readonly; \
         touch /tmp/x 2>/dev/null && echo tmp-writable || echo tmp-readonly",
    );
    config.user.uid = 1000;
    config.user.gid = 1000;
    config.security.read_only_rootfs = true;
    config.security.capabilities_drop = vec!["NET_RAW".into()];
    config.mounts = vec![
        Mount {
            source: volume_ro.path().into(),
            destination: "/ro".into(),
            read_only: true,
        },
        Mount {
            source: volume_rw.path().into(),
            destination: "/rw".into(),
            read_only: false,
        },
    ];
    // The volume must be writable by uid 1000.
    Command::new("chown")
        .arg("1000:1000")
        .arg(volume_rw.path())
        .status()
        .unwrap();
    let id = config.id.clone();
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: vec![id.clone()],
    };
    let handle = rt.create(config).await.unwrap();
    tokio::time::timeout(DEADLINE, rt.wait(&id))
        .await
        .unwrap()
        .unwrap();
    let out = lines(&log_text(&handle.log_path), "stdout");
    assert_eq!(out[..2], ["1000", "1000"], "{out:?}");
    // A non-root process keeps no effective capabilities across execve.
    assert_eq!(status_field(&out, "CapEff"), "0000000000000000");
    for expected in [
        "from-host",
        "ro-refused",
        "rw-ok",
        "root-readonly",
        "tmp-readonly",
    ] {
        assert!(
            out.contains(&expected.to_string()),
            "{expected} missing: {out:?}"
        );
    }
    assert_eq!(
        fs::read_to_string(volume_rw.path().join("out")).unwrap(),
        "written\n"
    );

    let mut root = container("capdrop", "grep -E 'CapEff|CapBnd' /proc/self/status");
    root.security.capabilities_drop = vec!["NET_RAW".into()];
    root.security.capabilities_add = vec!["SYS_TIME".into()];
    let id = root.id.clone();
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: vec![id.clone()],
    };
    let handle = rt.create(root).await.unwrap();
    tokio::time::timeout(DEADLINE, rt.wait(&id))
        .await
        .unwrap()
        .unwrap();
    let out = lines(&log_text(&handle.log_path), "stdout");
    let caps = u64::from_str_radix(status_field(&out, "CapEff"), 16).unwrap();
    assert_eq!(caps & (1 << 13), 0, "NET_RAW was not dropped");
    assert_ne!(caps & (1 << 25), 0, "SYS_TIME was not added");
}

#[tokio::test]
async fn containers_of_a_pod_share_its_network_namespace_with_loopback_up() {
    let (rt, root) = runtime();
    let netns = netns::create(&root.path().join("netns"), &unique("pod")).unwrap();
    let script = "readlink /proc/self/ns/net; ip -o link show lo";
    let mut a = container("net-a", script);
    let mut b = container("net-b", script);
    a.netns = Some(netns.clone());
    b.netns = Some(netns.clone());
    let ids = vec![a.id.clone(), b.id.clone()];
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: ids.clone(),
    };
    let a = rt.create(a).await.unwrap();
    let b = rt.create(b).await.unwrap();
    for id in &ids {
        tokio::time::timeout(DEADLINE, rt.wait(id))
            .await
            .unwrap()
            .unwrap();
    }
    let (a, b) = (
        lines(&log_text(&a.log_path), "stdout"),
        lines(&log_text(&b.log_path), "stdout"),
    );
    use std::os::unix::fs::MetadataExt;
    let inode = fs::metadata(&netns).unwrap().ino();
    assert_eq!(a[0], format!("net:[{inode}]"));
    assert_eq!(b[0], a[0]);
    assert!(a[1].contains("LOOPBACK") && a[1].contains(",UP"), "{a:?}");
    netns::remove(&netns).unwrap();
    assert!(!netns.exists());
}

#[tokio::test]
async fn a_tty_container_logs_its_terminal_output_as_stdout() {
    let (rt, _root) = runtime();
    let mut config = container("tty", "[ -t 1 ] && echo on-a-tty; echo to-stderr >&2");
    config.tty = true;
    let id = config.id.clone();
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: vec![id.clone()],
    };
    let handle = rt.create(config).await.unwrap();
    let exit = tokio::time::timeout(DEADLINE, rt.wait(&id))
        .await
        .unwrap()
        .unwrap();
    let log = log_text(&handle.log_path);
    assert_eq!(exit.code, 0, "{log}");
    let out = lines(&log, "stdout");
    let out: Vec<&str> = out.iter().map(|l| l.trim_end_matches('\r')).collect();
    assert_eq!(out, ["on-a-tty", "to-stderr"], "{log}");
}

#[tokio::test]
async fn a_container_that_cannot_start_fails_create_and_leaves_nothing() {
    let (rt, root) = runtime();
    let mut config = container("missing", "");
    config.args = vec!["/no/such/program".into()];
    let id = config.id.clone();
    let error = rt.create(config).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::StartFailed { .. }), "{message}");
    assert!(message.contains("/no/such/program"), "{message}");
    assert!(
        !root.path().join(&id).exists(),
        "the state directory was left"
    );
    assert!(cgroup_dirs(&rt, &id).is_empty(), "the cgroup was left");

    let mut config = container("dup", "sleep 30");
    config.id = unique("dup");
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: vec![config.id.clone()],
    };
    rt.create(config.clone()).await.unwrap();
    assert!(matches!(
        rt.create(config).await,
        Err(Error::AlreadyExists(_))
    ));
}

#[tokio::test]
async fn containers_outlive_the_agent_and_are_readopted_with_the_same_pid() {
    let (rt, root) = runtime();
    let config = container("survivor", "echo up; exec sleep 1000");
    let id = config.id.clone();
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: vec![id.clone()],
    };
    let handle = rt.create(config).await.unwrap();
    wait_for_log(&handle.log_path, "up").await;
    // The shim is neither the agent's child nor in its session: killing the agent does not reach it.
    let stat = fs::read_to_string(format!("/proc/{}/stat", handle.shim_pid)).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let (ppid, sid): (i32, i32) = (fields[1].parse().unwrap(), fields[3].parse().unwrap());
    assert_ne!(ppid, std::process::id() as i32);
    assert_eq!(sid, handle.shim_pid, "the shim leads a session of its own");
    drop(handle.clone());
    drop(rt);

    // A new agent finds it: same pid, still running, nothing restarted.
    let mut config = RuntimeConfig::new(root.path()).unwrap();
    config.shim_program = shim_program();
    config.cgroup_parent = PathBuf::from(CGROUP_PARENT);
    let again = Runtime::new(config).unwrap();
    let listed: Vec<ContainerState> = again.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].status, Status::Running);
    assert_eq!(listed[0].handle.as_ref().unwrap(), &handle);
    assert!(alive(handle.pid));
    assert_eq!(
        log_text(&handle.log_path).matches("stdout F up").count(),
        1,
        "restarted"
    );
    let exit = again.stop(&id, Duration::from_secs(1)).await.unwrap();
    assert_eq!(exit.signal, Some(9));
}

#[tokio::test]
async fn the_shim_monitors_its_container_from_a_fresh_image_of_itself() {
    let (rt, _root) = runtime();
    let config = container("monitor", "echo up; exec sleep 1000");
    let id = config.id.clone();
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: vec![id.clone()],
    };
    let handle = rt.create(config).await.unwrap();
    wait_for_log(&handle.log_path, "up").await;
    // A state query is answered by the shim's monitor phase: the create phase re-executed, same pid.
    assert_eq!(rt.state(&id).await.unwrap().status, Status::Running);
    let cmdline = fs::read(format!("/proc/{}/cmdline", handle.shim_pid)).unwrap();
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let state_dir = handle.state_dir.display().to_string();
    assert_eq!(
        argv[1..5],
        ["shim", "--state-dir", state_dir.as_str(), "--monitor"],
        "{argv:?}"
    );
    let status = fs::read_to_string(format!("/proc/{}/status", handle.shim_pid)).unwrap();
    assert!(status.lines().any(|l| l == "Threads:\t1"), "{status}");
    // Still the container's parent, so it reaps it and records the exit.
    let stat = fs::read_to_string(format!("/proc/{}/stat", handle.pid)).unwrap();
    let ppid: i32 = stat
        .rsplit_once(") ")
        .unwrap()
        .1
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ppid, handle.shim_pid);
    let exit = rt.stop(&id, Duration::from_millis(100)).await.unwrap();
    assert_eq!(exit.signal, Some(9));
    let shim_log = log_text(&handle.state_dir.join("shim.log"));
    assert!(!shim_log.contains("monitoring in place"), "{shim_log}");
}

#[tokio::test]
async fn remove_leaves_no_process_mount_cgroup_or_file() {
    let (rt, root) = runtime();
    let mut config = container("removed", "echo up; sleep 1000 & exec sleep 1000");
    config.resources.memory_limit = Some(64 << 20);
    config.resources.pids_limit = Some(32);
    config.resources.cpu_shares = Some(256);
    let id = config.id.clone();
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: vec![id.clone()],
    };
    let handle = rt.create(config).await.unwrap();
    wait_for_log(&handle.log_path, "up").await;
    let dirs = cgroup_dirs(&rt, &id);
    assert!(!dirs.is_empty(), "no cgroup was made");
    let procs: HashSet<i32> = dirs
        .iter()
        .flat_map(|d| {
            fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .map(|l| l.parse().unwrap())
                .collect::<Vec<i32>>()
        })
        .collect();
    assert!(procs.len() >= 2, "{procs:?}");
    // The rootfs is mounted in the shim's namespace, never in the host's.
    let state_dir = handle.state_dir.to_str().unwrap().to_string();
    assert!(
        !fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&state_dir)
    );
    let shim_mounts = fs::read_to_string(format!("/proc/{}/mountinfo", handle.shim_pid)).unwrap();
    assert!(
        shim_mounts.contains(&format!("{state_dir}/rootfs")),
        "{shim_mounts}"
    );

    rt.remove(&id).await.unwrap();
    for pid in procs.iter().chain([&handle.shim_pid]) {
        assert!(wait_gone(*pid).await, "process {pid} survived");
    }
    assert!(cgroup_dirs(&rt, &id).is_empty(), "cgroup left");
    assert!(!handle.state_dir.exists(), "state left");
    assert_eq!(fs::read_dir(root.path()).unwrap().count(), 0);
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(root.path().to_str().unwrap()),
        "{mountinfo}"
    );
    assert!(matches!(rt.remove(&id).await, Err(Error::NotFound(_))));
}

#[tokio::test]
async fn remove_cleans_up_after_a_shim_that_was_killed() {
    let (rt, _root) = runtime();
    let config = container("orphan", "echo up; exec sleep 1000");
    let id = config.id.clone();
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: vec![id.clone()],
    };
    let handle = rt.create(config).await.unwrap();
    wait_for_log(&handle.log_path, "up").await;
    kill(
        Pid::from_raw(handle.shim_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(wait_gone(handle.shim_pid).await);
    assert!(matches!(
        rt.state(&id).await.unwrap().status,
        Status::Unknown(_)
    ));
    rt.remove(&id).await.unwrap();
    assert!(
        wait_gone(handle.pid).await,
        "the orphaned container survived"
    );
    assert!(cgroup_dirs(&rt, &id).is_empty());
    assert!(!handle.state_dir.exists());
}

/// This host's controllers are on cgroup v1; most users' are on v2. The v2 path runs here in a mount namespace
/// where `/sys/fs/cgroup` is the host's (controller-less) cgroup2 hierarchy, so libcontainer and berth take
/// their v2 branches for real: detection, placement, cgroup namespace, capabilities, OOM counter, removal.
#[test]
fn the_cgroup_v2_path_runs_under_a_unified_hierarchy() {
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec \"$0\" \"$@\"")
        .arg(&exe)
        .args([
            "--exact",
            "v2_inner",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("BERTH_CGROUP_V2_INNER", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("test v2_inner ... ok"),
        "the inner test did not run:\n{stdout}"
    );
}

#[tokio::test]
#[ignore = "run by the_cgroup_v2_path_runs_under_a_unified_hierarchy inside its mount namespace"]
async fn v2_inner() {
    if std::env::var_os("BERTH_CGROUP_V2_INNER").is_none() {
        return;
    }
    let (rt, _root) = runtime();
    assert_eq!(rt.cgroup_version(), CgroupVersion::V2);
    let config = container(
        "v2",
        "cat /proc/self/cgroup; grep CapEff /proc/self/status; echo up; exec sleep 1000",
    );
    let id = config.id.clone();
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: vec![id.clone()],
    };
    let handle = rt.create(config).await.unwrap();
    let log = wait_for_log(&handle.log_path, "stdout F up").await;
    let out = lines(&log, "stdout");
    // Its own cgroup namespace: the container sees its cgroup as the root.
    assert!(out.contains(&"0::/".to_string()), "{out:?}");
    // No CAP_MKNOD on v2 (the device allowlist is not enforced there).
    assert_eq!(
        u64::from_str_radix(status_field(&out, "CapEff"), 16).unwrap(),
        0xa80425fb & !(1 << 27)
    );
    let host_view = fs::read_to_string(format!("/proc/{}/cgroup", handle.pid)).unwrap();
    let expected = format!("0::{}", rt.cgroup_path(&id).display());
    assert!(host_view.lines().any(|l| l == expected), "{host_view}");
    let dirs = cgroup_dirs(&rt, &id);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let exit = rt.stop(&id, Duration::from_millis(200)).await.unwrap();
    assert_eq!((exit.signal, exit.oom_killed), (Some(9), false));
    assert!(!dirs[0].exists(), "the v2 cgroup outlived the container");

    // A running container's v2 cgroup goes with `remove` too.
    let config = container("v2-remove", "echo up; exec sleep 1000");
    let id = config.id.clone();
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: vec![id.clone()],
    };
    let handle = rt.create(config).await.unwrap();
    wait_for_log(&handle.log_path, "up").await;
    let dirs = cgroup_dirs(&rt, &id);
    assert_eq!(dirs.len(), 1);
    rt.remove(&id).await.unwrap();
    assert!(!dirs[0].exists());
    assert!(wait_gone(handle.pid).await);
}

/// Everything written to `fd` until its writers are gone.
async fn read_all(fd: std::os::fd::OwnedFd) -> String {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut text = String::new();
        let _ = fs::File::from(fd).read_to_string(&mut text);
        text
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn exec_joins_the_running_container_as_its_user() {
    let (rt, _root) = runtime();
    let mut config = container("exec", "echo up; exec sleep 1000");
    config.hostname = Some("exec-box".into());
    config.user.uid = 1000;
    config.user.gid = 1000;
    let id = config.id.clone();
    let _cleanup = Cleanup {
        runtime: rt.clone(),
        ids: vec![id.clone()],
    };
    let handle = rt.create(config).await.unwrap();
    wait_for_log(&handle.log_path, "up").await;

    let mut process = rt
        .exec(
            &id,
            vec![
                "sh".into(),
                "-c".into(),
                "hostname; id -u; echo pid=$$; grep Seccomp: /proc/self/status; cat; echo err >&2; exit 5".into(),
            ],
            false,
        )
        .await
        .unwrap();
    let pid = process.pid;
    assert!(pid > 0);
    {
        use std::io::Write;
        let mut stdin = fs::File::from(process.stdin.take().unwrap());
        stdin.write_all(b"from-stdin\n").unwrap();
    }
    let stdout = process.stdout.take().unwrap();
    let stderr = process.stderr.take().unwrap();
    let waiter = process.wait();
    let exit = tokio::time::timeout(DEADLINE, waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code, 5);
    let out: Vec<String> = read_all(stdout).await.lines().map(str::to_string).collect();
    assert_eq!(out[0], "exec-box");
    assert_eq!(out[1], "1000");
    assert_ne!(out[2], "pid=1", "exec ran as the container's init");
    assert_eq!(status_field(&out, "Seccomp"), "2");
    assert_eq!(out[4], "from-stdin");
    assert_eq!(read_all(stderr).await, "err\n");
    assert!(!alive(pid) || wait_gone(pid).await);
    // The container itself runs on.
    assert_eq!(rt.state(&id).await.unwrap().status, Status::Running);

    let mut tty = rt
        .exec(
            &id,
            vec!["sh".into(), "-c".into(), "[ -t 0 ] && echo on-a-tty".into()],
            true,
        )
        .await
        .unwrap();
    assert!(tty.stderr.is_none());
    let master = tty.stdout.take().unwrap();
    let exit = tokio::time::timeout(DEADLINE, tty.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code, 0);
    assert!(read_all(master).await.contains("on-a-tty"));
}
