//! The shim's monitor phase. Once the container runs, the create phase re-executes this binary (same pid, so
//! the shim stays the container's parent and subreaper, in the same session and mount namespace) with the
//! numbers of the descriptors it hands over in argv; everything else it had (libcontainer's heap, the pages
//! of the binary it touched) is gone. The monitor reads the rest from the state directory and serves.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::process::ExitCode;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::ShimError;
use super::create::Created;
use super::serve::{Output, Shim};
use crate::runtime::logs::{LogWriter, Stream};
use crate::runtime::state::{ShimConfig, Started, StateDir, read_json};

/// The descriptors the monitor takes over from the create phase.
pub(super) struct Handover {
    /// The bound control socket, so that no request is refused while the shim changes phase.
    pub(super) listener: OwnedFd,
    /// The container's output: stdout and stderr pipes, or the PTY master as stdout.
    pub(super) outputs: Vec<(Stream, OwnedFd)>,
    /// The write end of the container's stdin pipe, when it keeps stdin open without a TTY.
    pub(super) stdin: Option<OwnedFd>,
}

impl Handover {
    /// `listener=3,stdout=5,stderr=6,stdin=7`: what the monitor's argv carries.
    fn encode(&self) -> String {
        let mut parts = vec![format!("listener={}", self.listener.as_raw_fd())];
        parts.extend(
            self.outputs
                .iter()
                .map(|(stream, fd)| format!("{}={}", stream_name(*stream), fd.as_raw_fd())),
        );
        parts.extend(
            self.stdin
                .iter()
                .map(|fd| format!("stdin={}", fd.as_raw_fd())),
        );
        parts.join(",")
    }

    /// Takes over the descriptors that `encode` named, marking them close-on-exec again (an exec helper must
    /// not hold the container's stdin or the control socket).
    fn adopt(encoded: &str) -> Result<Self, ShimError> {
        let mut listener = None;
        let mut outputs = Vec::new();
        let mut stdin = None;
        for part in encoded.split(',') {
            let bad = || ShimError::Config(format!("bad descriptor list {encoded:?}"));
            let (name, number) = part.split_once('=').ok_or_else(bad)?;
            let number: RawFd = number.parse().map_err(|_| bad())?;
            fcntl(number, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
                .map_err(ShimError::sys(format!("descriptor {name}={number}")))?;
            // SAFETY: the create phase handed this open descriptor over (fcntl just succeeded on it) and it
            // is named once in the list; nothing else in this process image owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(number) };
            match name {
                "listener" => listener = Some(fd),
                "stdin" => stdin = Some(fd),
                "stdout" => outputs.push((Stream::Stdout, fd)),
                "stderr" => outputs.push((Stream::Stderr, fd)),
                _ => return Err(bad()),
            }
        }
        Ok(Self {
            listener: listener
                .ok_or_else(|| ShimError::Config("no control socket was handed over".into()))?,
            outputs,
            stdin,
        })
    }

    fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        std::iter::once(self.listener.as_raw_fd())
            .chain(self.outputs.iter().map(|(_, fd)| fd.as_raw_fd()))
            .chain(self.stdin.iter().map(|fd| fd.as_raw_fd()))
    }
}

fn stream_name(stream: Stream) -> &'static str {
    match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    }
}

/// The create phase's last step: re-executes the binary as the monitor. If the exec fails the monitor runs
/// here, in the create phase's larger image.
pub(super) fn become_monitor(state: &StateDir, created: Created) -> ExitCode {
    let handover = created.handover;
    match exec_monitor(state, &handover) {
        Ok(never) => match never {},
        Err(err) => {
            tracing::warn!(%err, "could not re-execute as the monitor; monitoring in place");
            for fd in handover.fds() {
                let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
            }
            monitor(state, handover)
        }
    }
}

fn exec_monitor(
    state: &StateDir,
    handover: &Handover,
) -> Result<std::convert::Infallible, ShimError> {
    let args = super::phase_args(state, "--monitor", &handover.encode());
    let args = args
        .iter()
        .map(|arg| CString::new(arg.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| ShimError::Config(format!("an argument holds a NUL byte: {err}")))?;
    for fd in handover.fds() {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))
            .map_err(ShimError::sys("keeping a descriptor across the exec"))?;
    }
    let exe = CString::new(super::self_exe().as_os_str().as_bytes())
        .map_err(|err| ShimError::Config(err.to_string()))?;
    nix::unistd::execv(&exe, &args).map_err(ShimError::sys("re-executing as the monitor"))
}

/// The monitor phase's entry (`shim --state-dir DIR --monitor FDS`).
pub(super) fn run(state: &StateDir, encoded: &std::ffi::OsStr) -> ExitCode {
    super::init_tracing(&state.shim_log(), super::LOG_FILTER);
    let span = tracing::info_span!("shim", dir = %state.path().display());
    let _enter = span.enter();
    let Some(encoded) = encoded.to_str() else {
        tracing::error!(?encoded, "the descriptor list is not UTF-8");
        return ExitCode::FAILURE;
    };
    match Handover::adopt(encoded) {
        Ok(handover) => monitor(state, handover),
        Err(err) => {
            tracing::error!(%err, "taking over from the create phase");
            ExitCode::FAILURE
        }
    }
}

fn monitor(state: &StateDir, handover: Handover) -> ExitCode {
    match prepare(state, handover) {
        Ok(shim) => {
            shim.serve();
            ExitCode::SUCCESS
        }
        // The container runs on without its shim; the agent sees the shim gone with no exit recorded.
        Err(err) => {
            tracing::error!(%err, "the monitor could not start");
            ExitCode::FAILURE
        }
    }
}

fn prepare(state: &StateDir, handover: Handover) -> Result<Shim, ShimError> {
    let config = read_json::<ShimConfig>(&state.shim_config())
        .map_err(ShimError::io("reading the shim config"))?
        .ok_or_else(|| {
            ShimError::Config(format!("{} is missing", state.shim_config().display()))
        })?;
    let started = read_json::<Started>(&state.started())
        .map_err(ShimError::io("reading the start record"))?
        .ok_or_else(|| ShimError::Config(format!("{} is missing", state.started().display())))?;
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block()
        .map_err(ShimError::sys("blocking SIGCHLD"))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(ShimError::sys("creating a signalfd"))?;
    let listener = UnixListener::from(handover.listener);
    listener
        .set_nonblocking(true)
        .map_err(ShimError::io("making the control socket non-blocking"))?;
    let log_path = config
        .log
        .path
        .clone()
        .unwrap_or_else(|| state.default_log());
    let log = LogWriter::open(&log_path, &config.log).map_err(ShimError::io(format!(
        "opening the log {}",
        log_path.display()
    )))?;
    let outputs = handover
        .outputs
        .into_iter()
        .map(|(stream, fd)| Output::new(fd, stream, config.tty))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Shim {
        cgroups_path: config.cgroups_path,
        state: state.clone(),
        started,
        signals,
        listener,
        outputs,
        stdin: handover.stdin,
        log,
        tty: config.tty,
        stdin_open: config.stdin,
    })
}

#[cfg(test)]
mod tests {
    use std::os::fd::IntoRawFd;

    use super::*;

    fn cloexec(fd: RawFd) -> bool {
        FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD).unwrap())
            .contains(FdFlag::FD_CLOEXEC)
    }

    #[test]
    fn the_handover_names_its_descriptors_and_is_adopted_close_on_exec() {
        let (out_read, _out_write) = nix::unistd::pipe().unwrap();
        let (err_read, _err_write) = nix::unistd::pipe().unwrap();
        let (_in_read, in_write) = nix::unistd::pipe().unwrap();
        let (listener, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let handover = Handover {
            listener: listener.into(),
            outputs: vec![(Stream::Stdout, out_read), (Stream::Stderr, err_read)],
            stdin: Some(in_write),
        };
        let encoded = handover.encode();
        let numbers: Vec<RawFd> = handover.fds().collect();
        assert_eq!(
            encoded,
            format!(
                "listener={},stdout={},stderr={},stdin={}",
                numbers[0], numbers[1], numbers[2], numbers[3]
            )
        );
        // What the exec does: the descriptors stay open, and this image no longer owns them.
        let Handover {
            listener,
            outputs,
            stdin,
        } = handover;
        let _ = listener.into_raw_fd();
        for (_, fd) in outputs {
            let _ = fd.into_raw_fd();
        }
        let _ = stdin.map(IntoRawFd::into_raw_fd);

        let adopted = Handover::adopt(&encoded).unwrap();
        assert_eq!(adopted.fds().collect::<Vec<_>>(), numbers);
        let streams: Vec<Stream> = adopted.outputs.iter().map(|(s, _)| *s).collect();
        assert_eq!(streams, [Stream::Stdout, Stream::Stderr]);
        assert!(adopted.fds().all(cloexec));
    }

    #[test]
    fn a_bad_handover_is_refused() {
        for encoded in [
            "",
            "listener",
            "listener=x",
            "listener=1048576",
            "stdin=1048576",
        ] {
            assert!(Handover::adopt(encoded).is_err(), "{encoded:?}");
        }
    }
}
