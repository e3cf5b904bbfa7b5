//! A streaming session with a container's shim, the agent's side shared by `exec` and `attach`: one connection
//! carries the request with the shim's ends of the session's pipes (SCM_RIGHTS), the answer with at most one
//! descriptor back (a PTY master or the container's stdin), and then the exit of what the session is about.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use tokio::io::BufReader;

use super::protocol::{Request, Response, read_exit, recv_with_fd, send_with_fds};
use super::state::ExitStatus;
use super::{Error, Runtime};

/// The connection of an open session, which reports the exit once it comes.
pub(super) struct Session {
    id: String,
    control: BufReader<tokio::net::UnixStream>,
}

/// What the shim answered to the request that opened a session.
pub(super) struct Opened {
    pub session: Session,
    pub answer: Response,
    pub fd: Option<OwnedFd>,
}

impl Session {
    /// Waits for the exit the shim reports on this connection.
    pub(super) async fn wait(mut self) -> Result<ExitStatus, Error> {
        read_exit(&mut self.control)
            .await
            .map_err(|reason| self.error(reason))
    }

    pub(super) fn error(&self, reason: impl Into<String>) -> Error {
        Error::Shim {
            id: self.id.clone(),
            reason: reason.into(),
        }
    }

    /// The error for an answer the verb did not expect: the shim's own reason, or the answer itself.
    pub(super) fn refused(&self, answer: Response) -> Error {
        match answer {
            Response::Error(reason) => self.error(reason),
            other => self.error(format!("unexpected answer {other:?}")),
        }
    }
}

/// A second descriptor for a PTY master: one for input, one for output or resizing.
pub(super) fn duplicate_pty(master: &OwnedFd) -> Result<OwnedFd, Error> {
    master
        .try_clone()
        .map_err(Error::io("duplicating the PTY master"))
}

impl Runtime {
    /// Opens a `verb` session (`exec`, `attach`) with the shim of container `id`: sends `request` with `fds`,
    /// the shim's ends of the session's pipes. They are closed here once sent, so that the agent's ends see
    /// EOF when the shim's copies close.
    pub(super) async fn open_session(
        &self,
        id: &str,
        verb: &'static str,
        request: Request,
        fds: Vec<OwnedFd>,
    ) -> Result<Opened, Error> {
        let socket = self.state_dir(id)?.socket();
        let id_owned = id.to_string();
        let (stream, answer, fd) =
            tokio::task::spawn_blocking(move || exchange(&id_owned, &socket, verb, &request, fds))
                .await
                .map_err(|err| Error::io(verb)(std::io::Error::other(err)))??;
        Ok(Opened {
            session: Session {
                id: id.to_string(),
                control: BufReader::new(super::control_stream(stream)?),
            },
            answer,
            fd,
        })
    }
}

/// The blocking half: descriptors travel as SCM_RIGHTS, which tokio's sockets do not carry.
fn exchange(
    id: &str,
    socket: &Path,
    verb: &str,
    request: &Request,
    fds: Vec<OwnedFd>,
) -> Result<(UnixStream, Response, Option<OwnedFd>), Error> {
    let shim_error = |reason: String| Error::Shim {
        id: id.to_string(),
        reason,
    };
    let stream = UnixStream::connect(socket).map_err(|_| Error::NotRunning(id.to_string()))?;
    let raw: Vec<_> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    send_with_fds(&stream, request, &raw)
        .map_err(|err| shim_error(format!("sending the {verb} request: {err}")))?;
    drop(fds);
    let (answer, fd) = recv_with_fd(&stream)
        .map_err(|err| shim_error(format!("reading the {verb} answer: {err}")))?;
    Ok((stream, answer, fd))
}
