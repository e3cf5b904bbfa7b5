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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Running { pid: i32 },
    ExecStarted { pid: i32 },
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
