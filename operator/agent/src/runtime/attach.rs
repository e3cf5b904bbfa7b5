//! `attach`: the container's own stdio (`kubectl attach`). The shim keeps logging and copies the output to
//! every attached client's pipes; input goes straight into the container's stdin pipe or PTY. Several clients
//! may attach at once; dropping an [`Attached`] detaches and leaves the container running.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::{FcntlArg, fcntl};

use super::protocol::{Request, Response};
use super::session::{Session, duplicate_pty};
use super::state::ExitStatus;
use super::{Error, Runtime, tty};

/// How much output a pipe to an attached client buffers: the shim detaches a client that falls this far
/// behind rather than hold the container back (best effort; the kernel caps it at `pipe-max-size`).
const ATTACH_PIPE_SIZE: i32 = 1 << 20;

/// A client attached to a running container by [`Runtime::attach`]. Take the streams you use.
pub struct Attached {
    /// Input for the container: its stdin pipe, or its PTY master. `None` unless asked for and the container
    /// keeps stdin open (`stdin: true`).
    pub stdin: Option<OwnedFd>,
    /// The container's output (its terminal's with a TTY), from the moment of attaching. EOF once the
    /// container has exited, or the shim detached a client that fell behind.
    pub stdout: Option<OwnedFd>,
    /// Its stderr; `None` with a TTY.
    pub stderr: Option<OwnedFd>,
    /// Whether the container runs on a terminal.
    pub tty: bool,
    /// The container's terminal, to resize it; `None` without a TTY.
    pub terminal: Option<tty::Terminal>,
    session: Session,
}

impl Attached {
    /// Waits for the container to exit. An error when the shim detached this client first.
    pub async fn wait(self) -> Result<ExitStatus, Error> {
        self.session.wait().await
    }
}

impl Runtime {
    /// Attaches to the running container `id`'s stdio; `stdin` asks for its input too.
    #[tracing::instrument(skip(self))]
    pub async fn attach(&self, id: &str, stdin: bool) -> Result<Attached, Error> {
        // The pipes' write ends go to the shim. Both are sent; a shim with a TTY container uses the first only
        // and closes the other.
        let (stdout_read, stdout_write) = super::pipe()?;
        let (stderr_read, stderr_write) = super::pipe()?;
        for pipe in [&stdout_write, &stderr_write] {
            // Best effort: a smaller buffer only detaches a slow client sooner.
            let _ = fcntl(pipe.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(ATTACH_PIPE_SIZE));
        }
        let opened = self
            .open_session(
                id,
                "attach",
                Request::Attach { stdin },
                vec![stdout_write, stderr_write],
            )
            .await?;
        let session = opened.session;
        let (tty, input) = match opened.answer {
            Response::Attached { tty, stdin: input } => (tty, input),
            Response::Error(reason) if reason.contains("not running") => {
                return Err(Error::NotRunning(id.to_string()));
            }
            other => return Err(session.refused(other)),
        };
        let (stdin, pty) = match (tty, opened.fd) {
            (true, Some(master)) => {
                let stdin = match input {
                    true => Some(duplicate_pty(&master)?),
                    false => None,
                };
                (stdin, Some(master))
            }
            (false, fd) => (fd.filter(|_| input), None),
            (true, None) => {
                return Err(session.error("no PTY came with the attach answer"));
            }
        };
        Ok(Attached {
            stdin,
            stdout: Some(stdout_read),
            stderr: (!tty).then_some(stderr_read),
            tty,
            terminal: pty.map(tty::Terminal::new),
            session,
        })
    }
}
