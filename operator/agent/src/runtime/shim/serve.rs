//! The monitor's work: one `poll` loop over the container's output, SIGCHLD (a signalfd) and the control
//! socket, until the container has exited and its output is drained; then the exit is recorded.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::SignalFd;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::ShimError;
use crate::runtime::logs::{LineSplitter, LogWriter, Stream};
use crate::runtime::protocol::{Request, Response};
use crate::runtime::state::{ExitStatus, LIBCONTAINER_ID, Started, StateDir, write_json};

/// How long output may keep coming after the container's init exited (a process that escaped its pid
/// namespace's teardown cannot hold the shim forever).
const DRAIN: Duration = Duration::from_secs(2);

/// One of the container's output streams: a pipe, or the PTY master.
pub(crate) struct Output {
    fd: std::fs::File,
    splitter: LineSplitter,
    pty: bool,
}

impl Output {
    pub(crate) fn new(fd: OwnedFd, stream: Stream, pty: bool) -> Result<Self, ShimError> {
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            .map_err(ShimError::sys("making an output non-blocking"))?;
        Ok(Self {
            fd: fd.into(),
            splitter: LineSplitter::new(stream),
            pty,
        })
    }

    /// Reads what is there, logs it and copies it to every attached client; `false` once the stream has
    /// ended.
    fn pump(&mut self, log: &mut LogWriter, clients: &mut [Client]) -> bool {
        let mut buf = [0u8; 32 * 1024];
        loop {
            match self.fd.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Err(err) = self.splitter.feed(&buf[..n], log) {
                        tracing::warn!(%err, "writing the container log");
                    }
                    let stream = self.splitter.stream();
                    for client in clients.iter_mut() {
                        client.copy_output(stream, &buf[..n]);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return true,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // A PTY master reads EIO once the last slave descriptor is closed.
                Err(err) if self.pty && err.raw_os_error() == Some(libc::EIO) => break,
                Err(err) => {
                    tracing::warn!(%err, "reading the container's output");
                    break;
                }
            }
        }
        let _ = self.splitter.finish(log);
        false
    }
}

/// Where an attached client receives the container's output: the write ends of its pipes, non-blocking so
/// that a client that stops reading can never stall the container or its log.
struct Sinks {
    stdout: std::fs::File,
    stderr: Option<std::fs::File>,
}

/// A connection on the control socket.
struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
    /// Descriptors received with the request (an exec's stdio).
    fds: Vec<OwnedFd>,
    waiting: bool,
    /// The exec process this connection waits for.
    exec: Option<Pid>,
    /// The pipes of an attached client.
    attach: Option<Sinks>,
    closed: bool,
}

impl Client {
    /// Copies output to an attached client. A client whose pipe is full is detached (its pipes and connection
    /// close): its reader fell a pipe buffer behind, and holding output back for it would stall everyone.
    fn copy_output(&mut self, stream: Stream, data: &[u8]) {
        let Some(sinks) = &mut self.attach else {
            return;
        };
        let sink = match (stream, &mut sinks.stderr) {
            (Stream::Stderr, Some(stderr)) => stderr,
            _ => &mut sinks.stdout,
        };
        if let Err(err) = sink.write_all(data) {
            if err.kind() == io::ErrorKind::WouldBlock {
                tracing::warn!(
                    "an attached client fell behind the container's output; detaching it"
                );
            }
            self.attach = None;
            self.closed = true;
        }
    }

    fn respond(&mut self, response: &Response) {
        self.respond_with_fd(response, None);
    }

    fn respond_with_fd(&mut self, response: &Response, fd: Option<&OwnedFd>) {
        let mut line = serde_json::to_vec(response).unwrap_or_default();
        line.push(b'\n');
        let sent = match fd {
            None => self.stream.write_all(&line).is_ok(),
            Some(fd) => {
                let fds = [fd.as_raw_fd()];
                let cmsg = [ControlMessage::ScmRights(&fds)];
                let iov = [IoSlice::new(&line)];
                // A response line is far below the socket buffer: one sendmsg carries it whole.
                sendmsg::<()>(
                    self.stream.as_raw_fd(),
                    &iov,
                    &cmsg,
                    MsgFlags::empty(),
                    None,
                )
                .is_ok_and(|n| n == line.len())
            }
        };
        if !sent {
            self.closed = true;
        }
    }
}

pub(crate) struct Shim {
    pub(super) cgroups_path: PathBuf,
    pub(super) state: StateDir,
    pub(super) started: Started,
    pub(super) signals: SignalFd,
    pub(super) listener: UnixListener,
    pub(super) outputs: Vec<Output>,
    /// The write end of the container's stdin, held open for attach.
    pub(super) stdin: Option<OwnedFd>,
    pub(super) log: LogWriter,
    /// The container has a PTY: its master is the output read by `outputs[0]`.
    pub(super) tty: bool,
    /// The container keeps stdin open for attached clients (the pipe in `stdin`, or the PTY).
    pub(super) stdin_open: bool,
}

impl Shim {
    /// Runs until the container has exited and its exit is recorded.
    pub(super) fn serve(mut self) {
        let pid = Pid::from_raw(self.started.pid);
        let mut clients: Vec<Client> = Vec::new();
        let mut exited: Option<WaitStatus> = None;
        let mut drain_until = None;
        loop {
            if exited.is_some()
                && (self.outputs.is_empty() || drain_until.is_some_and(|t| Instant::now() >= t))
            {
                break;
            }
            let (signal_ready, listener_ready, output_ready, client_ready) = {
                let mut fds = vec![
                    PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
                ];
                fds.extend(
                    self.outputs
                        .iter()
                        .map(|o| PollFd::new(o.fd.as_fd(), PollFlags::POLLIN)),
                );
                fds.extend(
                    clients
                        .iter()
                        .map(|c| PollFd::new(c.stream.as_fd(), PollFlags::POLLIN)),
                );
                let timeout = match exited {
                    Some(_) => PollTimeout::from(100u16),
                    None => PollTimeout::NONE,
                };
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(err) => {
                        tracing::error!(%err, "poll");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
                let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
                let outputs = self.outputs.len();
                (
                    ready(&fds[0]),
                    ready(&fds[1]),
                    fds[2..2 + outputs].iter().map(ready).collect::<Vec<_>>(),
                    fds[2 + outputs..].iter().map(ready).collect::<Vec<_>>(),
                )
            };

            if signal_ready {
                while let Ok(Some(_)) = self.signals.read_signal() {}
                for status in reap() {
                    if status.pid() == Some(pid) {
                        tracing::info!(?status, "the container exited");
                        exited = Some(status);
                        drain_until = Some(Instant::now() + DRAIN);
                    } else if let Some(client) = clients
                        .iter_mut()
                        .find(|c| c.exec.is_some() && c.exec == status.pid())
                    {
                        client.exec = None;
                        client.respond(&Response::Exited(exit_status(status, false)));
                    }
                }
            }
            let log = &mut self.log;
            let mut keep = output_ready.iter();
            self.outputs.retain_mut(|output| match keep.next() {
                Some(true) => output.pump(log, &mut clients),
                _ => true,
            });
            if listener_ready {
                while let Ok((stream, _)) = self.listener.accept() {
                    let _ = stream.set_nonblocking(true);
                    clients.push(Client {
                        stream,
                        buf: Vec::new(),
                        fds: Vec::new(),
                        waiting: false,
                        exec: None,
                        attach: None,
                        closed: false,
                    });
                }
            }
            for (client, ready) in clients.iter_mut().zip(client_ready) {
                if ready {
                    self.read_requests(client, pid, exited.is_some());
                }
            }
            clients.retain(|c| !c.closed);
        }
        let status = exited.unwrap_or(WaitStatus::StillAlive);
        self.finish(status, &mut clients);
    }

    fn read_requests(&mut self, client: &mut Client, pid: Pid, exited: bool) {
        let mut buf = [0u8; 4096];
        let mut space = nix::cmsg_space!([RawFd; 3]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let received = recvmsg::<()>(
            client.stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map(|message| {
            if let Ok(cmsgs) = message.cmsgs() {
                for cmsg in cmsgs {
                    if let ControlMessageOwned::ScmRights(fds) = cmsg {
                        // SAFETY: the kernel installed these descriptors for us; nothing else owns them.
                        client.fds.extend(
                            fds.into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
            }
            message.bytes
        });
        match received {
            Ok(0) => client.closed = true,
            Ok(n) => client.buf.extend_from_slice(&buf[..n]),
            Err(Errno::EAGAIN) => return,
            Err(_) => client.closed = true,
        }
        while let Some(end) = client.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = client.buf.drain(..=end).collect();
            let response = match serde_json::from_slice::<Request>(&line) {
                Ok(Request::Ping) => Some(Response::Running { pid: pid.as_raw() }),
                Ok(Request::Kill { signal }) => Some(signal_container(pid, signal, exited)),
                Ok(Request::Wait) => {
                    client.waiting = true;
                    None
                }
                Ok(Request::Exec { .. }) if exited => {
                    Some(Response::Error("the container is not running".into()))
                }
                Ok(Request::Exec { args, tty }) => {
                    let stdio = std::mem::take(&mut client.fds);
                    match super::exec::spawn(&self.state, args, tty, stdio) {
                        Ok((exec_pid, master)) => {
                            client.exec = Some(exec_pid);
                            client.respond_with_fd(
                                &Response::ExecStarted {
                                    pid: exec_pid.as_raw(),
                                },
                                master.as_ref(),
                            );
                            None
                        }
                        Err(err) => Some(Response::Error(format!("exec: {err}"))),
                    }
                }
                Ok(Request::Attach { .. }) if exited => {
                    Some(Response::Error("the container is not running".into()))
                }
                Ok(Request::Attach { stdin }) => {
                    let pipes = std::mem::take(&mut client.fds);
                    match self.attach(pipes, stdin) {
                        Ok((sinks, input, answer)) => {
                            client.attach = Some(sinks);
                            client.waiting = true;
                            client.respond_with_fd(&answer, input.as_ref());
                            None
                        }
                        Err(err) => Some(Response::Error(format!("attach: {err}"))),
                    }
                }
                Err(err) => Some(Response::Error(format!("bad request: {err}"))),
            };
            if let Some(response) = response {
                client.respond(&response);
            }
        }
    }

    /// An attach: the client's output pipes, and the descriptor that goes back with the answer.
    fn attach(
        &self,
        pipes: Vec<OwnedFd>,
        stdin: bool,
    ) -> Result<(Sinks, Option<OwnedFd>, Response), ShimError> {
        let sink = |fd: OwnedFd| -> Result<std::fs::File, ShimError> {
            fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
                .map_err(ShimError::sys("making an attach pipe non-blocking"))?;
            Ok(fd.into())
        };
        let mut pipes = pipes.into_iter();
        let stdout = pipes
            .next()
            .ok_or_else(|| ShimError::Config("attach needs an output pipe".into()))?;
        let sinks = Sinks {
            stdout: sink(stdout)?,
            stderr: match (self.tty, pipes.next()) {
                (false, Some(stderr)) => Some(sink(stderr)?),
                (false, None) => {
                    return Err(ShimError::Config(
                        "attach without a TTY needs stdout and stderr pipes".into(),
                    ));
                }
                (true, _) => None,
            },
        };
        let input = stdin && self.stdin_open;
        let fd = if self.tty {
            let master =
                self.outputs.iter().find(|o| o.pty).ok_or_else(|| {
                    ShimError::Config("the container's terminal is closed".into())
                })?;
            Some(master.fd.as_fd().try_clone_to_owned())
        } else if input {
            self.stdin.as_ref().map(|fd| fd.try_clone())
        } else {
            None
        };
        let fd = fd
            .transpose()
            .map_err(ShimError::io("duplicating the container's stdin"))?;
        let answer = Response::Attached {
            tty: self.tty,
            stdin: input,
        };
        Ok((sinks, fd, answer))
    }

    /// Records the exit: OOM counter first (the cgroup goes next), then libcontainer's delete (cgroup and its
    /// state), the rootfs unmount, `exit.json`, and the answers to every waiting client.
    /// libcontainer is loaded again for this only: the monitor ends right after.
    fn finish(mut self, status: WaitStatus, clients: &mut [Client]) {
        let hierarchy = crate::runtime::cgroups::detect()
            .inspect_err(|err| tracing::warn!(%err, "reading the cgroup setup"))
            .ok();
        let oom_kills = hierarchy
            .as_ref()
            .and_then(|hierarchy| {
                hierarchy
                    .oom_kills(&self.cgroups_path)
                    .inspect_err(|err| tracing::warn!(%err, "reading the OOM counter"))
                    .ok()
            })
            .unwrap_or(0);
        let deleted =
            libcontainer::container::Container::load(self.state.path().join(LIBCONTAINER_ID))
                .and_then(|mut container| container.delete(true));
        if let Err(err) = deleted {
            tracing::warn!(%err, "deleting the container");
        }
        if let Some(hierarchy) = &hierarchy
            && let Err(err) = hierarchy.kill_and_remove(&self.cgroups_path)
        {
            tracing::warn!(%err, "removing the container's cgroup");
        }
        super::create::unmount_rootfs(&self.state.rootfs());
        let exit = exit_status(status, oom_kills > 0);
        if let Err(err) = write_json(&self.state.exit(), &exit) {
            tracing::error!(%err, "recording the exit status");
        }
        drop(self.stdin.take());
        for client in clients.iter_mut().filter(|c| c.waiting) {
            client.respond(&Response::Exited(exit.clone()));
        }
        let _ = std::fs::remove_file(self.state.socket());
    }
}

/// Reaps every child that has exited: the container's init, exec'd processes, and orphans reparented to the
/// shim (it is a child subreaper).
fn reap() -> Vec<WaitStatus> {
    let mut reaped = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return reaped,
            Ok(status) => reaped.push(status),
        }
    }
}

fn exit_status(status: WaitStatus, oom_killed: bool) -> ExitStatus {
    let (code, signal) = match status {
        WaitStatus::Exited(_, code) => (code, None),
        WaitStatus::Signaled(_, signal, _) => (128 + signal as i32, Some(signal as i32)),
        _ => (255, None),
    };
    ExitStatus {
        code,
        signal,
        oom_killed,
        finished_at: jiff::Timestamp::now(),
    }
}

fn signal_container(pid: Pid, signal: i32, exited: bool) -> Response {
    if exited {
        return Response::Done;
    }
    // The init is the shim's unreaped child, so its pid cannot have been reused.
    match Signal::try_from(signal).map(|s| kill(pid, s)) {
        Ok(Ok(())) | Ok(Err(Errno::ESRCH)) => Response::Done,
        Ok(Err(err)) => Response::Error(format!("kill: {err}")),
        Err(err) => Response::Error(format!("signal {signal}: {err}")),
    }
}
