//! exec: the command runs in the container through the runtime (`Runtime::exec`); exit 0 is a success, and
//! the combined output is the failure message, as upstream. A command still running at `timeoutSeconds` is
//! killed and the attempt fails.

use std::os::fd::OwnedFd;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;

use super::Outcome;
use crate::runtime::Runtime;

/// Upstream keeps this much of a probe's output.
const MAX_OUTPUT: usize = 10 * 1024;

pub(super) async fn probe(
    runtime: &Runtime,
    container_id: &str,
    command: Vec<String>,
    timeout: Duration,
) -> Outcome {
    if command.is_empty() {
        return Outcome::Failure("exec probe has no command".into());
    }
    let shown = command.join(" ");
    let attempt = async {
        let mut process = runtime.exec(container_id, command, false).await?;
        let pid = process.pid;
        drop(process.stdin.take());
        let stdout = process.stdout.take();
        let stderr = process.stderr.take();
        let finished = async {
            let (mut out, err) = tokio::join!(read_limited(stdout), read_limited(stderr));
            out.extend(err);
            out.truncate(MAX_OUTPUT);
            let status = process.wait().await?;
            Ok::<_, crate::runtime::Error>((out, status))
        };
        Ok::<_, crate::runtime::Error>((pid, tokio::time::timeout(timeout, finished).await))
    };
    // Starting the process counts towards the timeout too, but must not be cut off half-way: it is short.
    match attempt.await {
        Err(err) => Outcome::Failure(err.to_string()),
        Ok((pid, Err(_))) => {
            // The shim reaps it; an exec'd process that already ended makes this a no-op (ESRCH).
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            Outcome::Failure(format!("command {shown:?} timed out"))
        }
        Ok((_, Ok(Err(err)))) => Outcome::Failure(err.to_string()),
        Ok((_, Ok(Ok((output, status))))) => {
            if status.code == 0 {
                Outcome::Success
            } else if output.is_empty() {
                Outcome::Failure(format!("command {shown:?} exited with {}", status.code))
            } else {
                Outcome::Failure(String::from_utf8_lossy(&output).into_owned())
            }
        }
    }
}

/// Reads a pipe to its end, keeping the first [`MAX_OUTPUT`] bytes: the process must never block on a full pipe.
async fn read_limited(fd: Option<OwnedFd>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(fd) = fd else { return kept };
    let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return kept;
    };
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = MAX_OUTPUT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    kept
}
