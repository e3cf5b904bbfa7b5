//! The shim's control socket (`shim.sock`): one JSON request per line from the agent, one JSON response per
//! line back. A `wait` is answered only when the container has exited, so an agent can hold it open.

use serde::{Deserialize, Serialize};

use super::state::ExitStatus;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Is the container still running? Answered with `Running`.
    Ping,
    /// Sends a signal to the container's init process; SIGKILL takes its whole pid namespace with it.
    Kill { signal: i32 },
    /// Answered with `Exited` once the container has exited and its cgroup is gone.
    Wait,
    /// Runs a process in the container's namespaces, cgroup, user, capabilities and seccomp profile. Without
    /// a TTY the request carries its stdin, stdout and stderr as SCM_RIGHTS; with one, the `ExecStarted`
    /// answer carries the PTY master. `Exited` follows on the same connection when the process ends.
    Exec { args: Vec<String>, tty: bool },
    /// Attaches to the container's own stdio. The request carries the write ends of pipes that receive a copy
    /// of its output (stdout and stderr; stdout alone with a TTY) while logging goes on; the `Attached` answer
    /// carries the container's stdin (the pipe's write end, or the PTY master with a TTY) when `stdin` is asked
    /// for and the container keeps it open, and the PTY master with a TTY whatever `stdin` is, for resizing.
    /// `Exited` follows on the same connection when the container ends; closing the connection detaches.
    Attach { stdin: bool },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Running {
        pid: i32,
    },
    ExecStarted {
        pid: i32,
    },
    /// `tty`: the container has a PTY (its master comes with the answer); `stdin`: the descriptor that comes
    /// with the answer also takes input.
    Attached {
        tty: bool,
        stdin: bool,
    },
    Done,
    Exited(ExitStatus),
    Error(String),
}

/// What the shim writes on its stdout once, when the container runs or could not be started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ready {
    Started(super::state::Started),
    Failed(String),
}

/// Sends one request to a shim and reads its answer (the agent's side; a `Wait` may take as long as the
/// container runs). Fails when the shim is not there or hangs up without answering.
pub(crate) async fn request(
    socket: &std::path::Path,
    request: &Request,
) -> std::io::Result<Response> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut stream = tokio::net::UnixStream::connect(socket).await?;
    let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line).await?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).await?;
    if answer.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the shim hung up without answering",
        ));
    }
    serde_json::from_str(&answer)
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))
}

/// Sends one request (or, between the shim's phases, answer) line with descriptors attached (SCM_RIGHTS, which
/// tokio's sockets do not carry).
pub(crate) fn send_with_fds<T: Serialize>(
    stream: &std::os::unix::net::UnixStream,
    message: &T,
    fds: &[std::os::fd::RawFd],
) -> std::io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::os::fd::AsRawFd;
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    let sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[std::io::IoSlice::new(&line)],
        cmsgs,
        MsgFlags::empty(),
        None,
    )?;
    if sent != line.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "the request was cut short",
        ));
    }
    Ok(())
}

/// Reads one answer line and the descriptor that may come with it. It reads a byte at a time: whatever follows
/// the line on the connection (an `Exited` answer) is left for the caller.
pub(crate) fn recv_with_fd(
    stream: &std::os::unix::net::UnixStream,
) -> std::io::Result<(Response, Option<std::os::fd::OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    let mut answer = Vec::new();
    let mut fd = None;
    while !answer.ends_with(b"\n") {
        let mut buf = [0u8; 1];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let message = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        if let Ok(cmsgs) = message.cmsgs() {
            for cmsg in cmsgs {
                if let ControlMessageOwned::ScmRights(fds) = cmsg {
                    for raw in fds {
                        // SAFETY: the kernel installed this descriptor for us; nothing else owns it.
                        fd = Some(unsafe { OwnedFd::from_raw_fd(raw) });
                    }
                }
            }
        }
        let bytes = message.bytes;
        if bytes == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the shim hung up without answering",
            ));
        }
        answer.extend_from_slice(&buf[..bytes]);
    }
    let response = serde_json::from_slice(&answer)
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))?;
    Ok((response, fd))
}

/// Reads the `Exited` answer that ends an exec or an attach connection.
pub(crate) async fn read_exit(
    control: &mut tokio::io::BufReader<tokio::net::UnixStream>,
) -> Result<ExitStatus, String> {
    use tokio::io::AsyncBufReadExt;
    let mut line = String::new();
    control
        .read_line(&mut line)
        .await
        .map_err(|err| format!("waiting for the exit: {err}"))?;
    match serde_json::from_str::<Response>(&line) {
        Ok(Response::Exited(exit)) => Ok(exit),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(_) if line.is_empty() => Err("the shim hung up before the process exited".into()),
        Err(err) => Err(format!("bad answer: {err}")),
    }
}
