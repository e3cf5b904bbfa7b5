//! `exec`: a new process in a running container (`kubectl exec`), started by the container's shim with
//! libcontainer's tenant support. The agent hands the shim the process's stdio (pipes) over a session
//! connection, or gets the PTY master back; the connection then reports the process's exit.

use std::os::fd::OwnedFd;

use super::protocol::{Request, Response};
use super::session::{Session, duplicate_pty};
use super::state::ExitStatus;
use super::{Error, Runtime, tty};

/// A process started by [`Runtime::exec`]. Like `std::process::Child`, take the streams you use; dropping
/// `stdin` closes the process's stdin.
pub struct ExecProcess {
    /// In the host's pid namespace.
    pub pid: i32,
    /// The process's stdin (write end of a pipe), or the PTY master with a TTY.
    pub stdin: Option<OwnedFd>,
    /// Its stdout (read end of a pipe), or the PTY master with a TTY.
    pub stdout: Option<OwnedFd>,
    /// Its stderr; `None` with a TTY, where it shares the terminal.
    pub stderr: Option<OwnedFd>,
    /// The process's terminal, to resize it; `None` without a TTY.
    pub terminal: Option<tty::Terminal>,
    session: Session,
}

impl ExecProcess {
    /// Waits for the process to exit.
    pub async fn wait(self) -> Result<ExitStatus, Error> {
        self.session.wait().await
    }
}

impl Runtime {
    /// Starts `args` in the running container `id`, as the container's user, with its capabilities and
    /// seccomp profile, optionally on a new TTY.
    #[tracing::instrument(skip(self))]
    pub async fn exec(&self, id: &str, args: Vec<String>, tty: bool) -> Result<ExecProcess, Error> {
        // Without a TTY the process gets pipes: the shim takes the container's ends (stdin's read end,
        // stdout's and stderr's write ends), we keep the others. With one, the answer brings the PTY master.
        let (ours, theirs) = if tty {
            (None, Vec::new())
        } else {
            let (stdin_read, stdin_write) = super::pipe()?;
            let (stdout_read, stdout_write) = super::pipe()?;
            let (stderr_read, stderr_write) = super::pipe()?;
            (
                Some((stdin_write, stdout_read, stderr_read)),
                vec![stdin_read, stdout_write, stderr_write],
            )
        };
        let opened = self
            .open_session(id, "exec", Request::Exec { args, tty }, theirs)
            .await?;
        let session = opened.session;
        let pid = match opened.answer {
            Response::ExecStarted { pid } => pid,
            other => return Err(session.refused(other)),
        };
        let (stdin, stdout, stderr, pty) = match (ours, opened.fd) {
            (Some((stdin, stdout, stderr)), _) => (stdin, stdout, Some(stderr), None),
            (None, Some(master)) => {
                let (stdin, pty) = (duplicate_pty(&master)?, duplicate_pty(&master)?);
                (stdin, master, None, Some(pty))
            }
            (None, None) => return Err(session.error("no PTY came with the answer")),
        };
        Ok(ExecProcess {
            pid,
            stdin: Some(stdin),
            stdout: Some(stdout),
            stderr,
            terminal: pty.map(tty::Terminal::new),
            session,
        })
    }
}
