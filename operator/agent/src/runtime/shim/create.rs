//! The shim's create phase: a private mount namespace, the overlayfs rootfs, the container's stdio, and
//! libcontainer's create and start. On failure everything made so far is undone before the shim reports.

use std::fs::{self, File};
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::unistd::pipe2;

use super::ShimError;
use super::monitor::Handover;
use crate::runtime::logs::{LogWriter, Stream};
use crate::runtime::seccomp::{SeccompExecutor, default_profile};
use crate::runtime::state::{LIBCONTAINER_ID, ShimConfig, Started, StateDir, write_json};

/// overlayfs takes its options as one page of mount data.
const MAX_MOUNT_DATA: usize = 4095;

/// A started container, and what the monitor takes over.
pub(super) struct Created {
    pub(super) started: Started,
    pub(super) handover: Handover,
}

pub(super) fn create(config: &ShimConfig, state: &StateDir) -> Result<Created, ShimError> {
    private_mount_namespace()?;
    mount_rootfs(config, state)?;
    start(config, state).inspect_err(|_| {
        let _ = umount2(&state.rootfs(), MntFlags::MNT_DETACH);
    })
}

/// The rootfs mount lives in the shim's own mount namespace: invisible on the host, and gone with the shim
/// whatever happens to it. Slave propagation still brings in what the host mounts later (volumes, netns).
fn private_mount_namespace() -> Result<(), ShimError> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(ShimError::sys("unsharing the mount namespace"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(ShimError::sys("making / a slave mount"))
}

fn mount_rootfs(config: &ShimConfig, state: &StateDir) -> Result<(), ShimError> {
    for dir in [state.rootfs(), state.upper(), state.work()] {
        fs::create_dir_all(&dir).map_err(ShimError::io(format!("creating {}", dir.display())))?;
    }
    // overlayfs lists the top layer first; the config lists the bottom one first.
    let lower: Vec<String> = config
        .lowerdirs
        .iter()
        .rev()
        .map(|dir| dir.display().to_string())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        state.upper().display(),
        state.work().display()
    );
    if data.len() > MAX_MOUNT_DATA {
        return Err(ShimError::Config(format!(
            "the overlayfs options for {} layers take {} bytes, more than the kernel's {MAX_MOUNT_DATA}: \
             use shorter layer paths or fewer layers",
            config.lowerdirs.len(),
            data.len()
        )));
    }
    mount(
        Some("overlay"),
        &state.rootfs(),
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(ShimError::sys(format!(
        "mounting the overlayfs rootfs on {}",
        state.rootfs().display()
    )))
}

fn start(config: &ShimConfig, state: &StateDir) -> Result<Created, ShimError> {
    // Processes that join the container later (exec) are reparented to the shim, not to the host's init. The
    // setting survives the exec into the monitor.
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(ShimError::sys("becoming a child subreaper"))?;
    // SIGCHLD stays blocked from here on, across the exec into the monitor, which reads it from a signalfd:
    // an exit while libcontainer forks, or while the monitor starts, stays pending and is not lost.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block()
        .map_err(ShimError::sys("blocking SIGCHLD"))?;
    let listener = UnixListener::bind(state.socket()).map_err(ShimError::io(format!(
        "binding {}",
        state.socket().display()
    )))?;
    // Opened here so that a log that cannot be written fails the start; the monitor opens it again.
    let log_path = config
        .log
        .path
        .clone()
        .unwrap_or_else(|| state.default_log());
    LogWriter::open(&log_path, &config.log).map_err(ShimError::io(format!(
        "opening the log {}",
        log_path.display()
    )))?;

    let filters = if config.seccomp {
        default_profile()?
    } else {
        Vec::new()
    };
    let mut builder = ContainerBuilder::new(LIBCONTAINER_ID.to_string(), SyscallType::default())
        .with_root_path(state.path())?
        .with_executor(SeccompExecutor::new(filters));

    let mut outputs = Vec::new();
    let mut console = None;
    if config.tty {
        let listener = UnixListener::bind(state.console_socket()).map_err(ShimError::io(
            format!("binding {}", state.console_socket().display()),
        ))?;
        builder = builder.with_console_socket(Some(state.console_socket()));
        console = Some(listener);
    } else {
        let (out_read, out_write) = pipe2(OFlag::O_CLOEXEC).map_err(ShimError::sys("pipe"))?;
        let (err_read, err_write) = pipe2(OFlag::O_CLOEXEC).map_err(ShimError::sys("pipe"))?;
        builder = builder.with_stdout(out_write).with_stderr(err_write);
        outputs.push((Stream::Stdout, out_read));
        outputs.push((Stream::Stderr, err_read));
    }
    let mut stdin = None;
    if config.stdin && !config.tty {
        let (read, write) = pipe2(OFlag::O_CLOEXEC).map_err(ShimError::sys("pipe"))?;
        builder = builder.with_stdin(read);
        stdin = Some(write);
    } else if !config.tty {
        let null = File::open("/dev/null").map_err(ShimError::io("opening /dev/null"))?;
        builder = builder.with_stdin(null);
    }

    let mut container = builder
        .as_init(state.bundle())
        .with_systemd(false)
        .with_detach(true)
        .build()?;
    let started = (|| {
        if let Some(listener) = &console {
            // With a TTY the PTY master carries the output and takes the input.
            outputs.push((Stream::Stdout, receive_pty_master(listener)?));
        }
        container.start()?;
        let pid = container
            .pid()
            .ok_or_else(|| ShimError::Config("libcontainer recorded no pid".into()))?;
        let started = Started {
            pid: pid.as_raw(),
            shim_pid: std::process::id() as i32,
            started_at: jiff::Timestamp::now(),
        };
        write_json(&state.started(), &started).map_err(ShimError::io(format!(
            "writing {}",
            state.started().display()
        )))?;
        Ok::<_, ShimError>(started)
    })();
    if console.is_some() {
        let _ = fs::remove_file(state.console_socket());
    }
    match started {
        Ok(started) => Ok(Created {
            started,
            handover: Handover {
                listener: listener.into(),
                outputs,
                stdin,
            },
        }),
        Err(err) => {
            let _ = container.delete(true);
            Err(err)
        }
    }
}

/// libcontainer's init process opens the PTY and sends its master end over the console socket.
pub(super) fn receive_pty_master(listener: &UnixListener) -> Result<OwnedFd, ShimError> {
    listener
        .set_nonblocking(false)
        .map_err(ShimError::io("console socket"))?;
    let (conn, _) = listener
        .accept()
        .map_err(ShimError::io("accepting the console connection"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(ShimError::io("console socket"))?;
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let message = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(ShimError::sys("receiving the PTY master"))?;
    for cmsg in message
        .cmsgs()
        .map_err(ShimError::sys("reading the PTY message"))?
    {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(fd) = fds.first()
        {
            // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
        }
    }
    Err(ShimError::Config(
        "the console socket carried no PTY".into(),
    ))
}

/// Unmounts the rootfs before the shim exits, so the upper layer is quiet before the agent removes it.
pub(super) fn unmount_rootfs(rootfs: &Path) {
    if let Err(err) = umount2(rootfs, MntFlags::MNT_DETACH) {
        tracing::warn!(%err, rootfs = %rootfs.display(), "unmounting the rootfs");
    }
}
