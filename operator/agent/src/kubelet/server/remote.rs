//! `exec` and `attach` over WebSocket, in the Kubernetes channel protocol (`v5.channel.k8s.io`, and
//! `v4.channel.k8s.io`): every binary message starts with its channel, 0 stdin, 1 stdout, 2 stderr, 3 the
//! final `metav1.Status`, 4 terminal resizes (`{"Width":..,"Height":..}`), and in v5 255 to close a
//! stream (`[255, 0]`: the client's stdin ended). The session ends with the status message and a close
//! frame with code 1000.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::StatusCode;
use serde_json::{Value, json};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use super::{ContainerRef, State as Shared, find, flag, status};
use crate::runtime::state::ExitStatus;
use crate::runtime::tty::{Size, Terminal};
use crate::runtime::{Error as RuntimeError, Runtime};

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// What the client asked for.
#[derive(Debug, Clone, PartialEq)]
struct Streams {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
    command: Vec<String>,
}

impl Streams {
    /// The kubelet's parameter names (`input`, `output`, `error`, `tty`, `command` once per argument), and
    /// the API server's (`stdin`, `stdout`, `stderr`) as well.
    fn parse(raw: Option<&str>) -> Result<Self, String> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or_default())
            .map_err(|e| format!("malformed query: {e}"))?;
        let mut command = Vec::new();
        let mut flags = HashMap::new();
        for (key, value) in pairs {
            if key == "command" {
                command.push(value);
            } else {
                flags.insert(key, value);
            }
        }
        let either = |a: &str, b: &str| flag(flags.get(a)) || flag(flags.get(b));
        let streams = Streams {
            stdin: either("input", "stdin"),
            stdout: either("output", "stdout"),
            stderr: either("error", "stderr"),
            tty: flag(flags.get("tty")),
            command,
        };
        if !(streams.stdin || streams.stdout || streams.stderr) {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        Ok(streams)
    }
}

pub(super) async fn exec(
    State(state): State<Shared>,
    Path(target): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    session(state, target, query, upgrade, Verb::Exec).await
}

pub(super) async fn attach(
    State(state): State<Shared>,
    Path(target): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    session(state, target, query, upgrade, Verb::Attach).await
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Verb {
    Exec,
    Attach,
}

async fn session(
    state: Shared,
    target: (String, String, String),
    query: Option<String>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    verb: Verb,
) -> Response {
    let bad = |message: String| status(StatusCode::BAD_REQUEST, "BadRequest", message);
    let streams = match Streams::parse(query.as_deref()) {
        Ok(streams) => streams,
        Err(message) => return bad(message),
    };
    if verb == Verb::Exec && streams.command.is_empty() {
        return bad("you must specify at least one command for the container".into());
    }
    let container = match find(&state, &target, false) {
        Ok(container) => container,
        Err(missing) => return missing.into_response(),
    };
    if !container.running {
        return bad(format!(
            "container {} is not running, cannot {}",
            target.2,
            if verb == Verb::Exec {
                "exec into it"
            } else {
                "attach to it"
            }
        ));
    }
    if verb == Verb::Attach && streams.tty && !container.tty {
        return bad(format!(
            "container {} does not run on a terminal (tty: true), attach without one",
            target.2
        ));
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade.protocols([V5, V4]),
        Err(rejection) => {
            return bad(format!(
                "a WebSocket upgrade ({V5} or {V4}) is required: {rejection}"
            ));
        }
    };
    let Some(protocol) = upgrade.selected_protocol().cloned() else {
        return bad(format!(
            "no supported stream protocol was requested: this kubelet speaks {V5} and {V4} \
             (kubectl 1.30 or newer)"
        ));
    };
    let v5 = protocol == V5;
    let mut shutdown = state.shutdown.clone();
    let runtime = state.runtime.clone();
    upgrade.on_upgrade(move |socket| async move {
        let key = format!("{}/{}/{}", target.0, target.1, target.2);
        tokio::select! {
            () = run(socket, runtime, container, streams, verb, v5) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
        tracing::debug!(container = %key, ?verb, "stream session ended");
    })
}

/// The process a session talks to, with its streams taken out.
struct Process {
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    terminal: Option<Terminal>,
    exit: futures::future::BoxFuture<'static, Result<ExitStatus, RuntimeError>>,
}

async fn start(
    runtime: &Runtime,
    container: &ContainerRef,
    streams: &Streams,
    verb: Verb,
) -> Result<Process, RuntimeError> {
    match verb {
        Verb::Exec => {
            let mut process = runtime
                .exec(&container.id, streams.command.clone(), streams.tty)
                .await?;
            Ok(Process {
                stdin: process.stdin.take(),
                stdout: process.stdout.take(),
                stderr: process.stderr.take(),
                terminal: process.terminal.take(),
                exit: Box::pin(process.wait()),
            })
        }
        Verb::Attach => {
            let mut attached = runtime.attach(&container.id, streams.stdin).await?;
            Ok(Process {
                stdin: attached.stdin.take(),
                stdout: attached.stdout.take(),
                stderr: attached.stderr.take(),
                terminal: attached.terminal.take(),
                exit: Box::pin(attached.wait()),
            })
        }
    }
}

async fn run(
    socket: WebSocket,
    runtime: Runtime,
    container: ContainerRef,
    streams: Streams,
    verb: Verb,
    v5: bool,
) {
    let (mut sink, mut incoming) = socket.split();
    let process = match start(&runtime, &container, &streams, verb).await {
        Ok(process) => process,
        Err(err) => {
            let message = match verb {
                Verb::Exec => format!("failed to exec in container: {err}"),
                Verb::Attach => format!("failed to attach to container: {err}"),
            };
            let _ = finish(
                &mut sink,
                failure(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    &message,
                    None,
                ),
            )
            .await;
            return;
        }
    };
    let Process {
        stdin,
        stdout,
        stderr,
        terminal,
        mut exit,
    } = process;

    // Output readers: each sends (channel, bytes) until its stream ends. Output the client did not ask
    // for is read and dropped, so that the process never blocks on a full pipe.
    let (output_tx, mut output) = mpsc::channel::<(u8, Vec<u8>)>(8);
    for (channel, fd, wanted) in [
        (STDOUT, stdout, streams.stdout),
        (STDERR, stderr, streams.stderr),
    ] {
        if let Some(fd) = fd {
            tokio::spawn(read_output(fd, channel, wanted.then(|| output_tx.clone())));
        }
    }
    drop(output_tx);
    // Input goes through a task of its own, so that a process that does not read never stalls the output.
    let input = stdin.filter(|_| streams.stdin).map(|fd| {
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        tokio::spawn(write_input(fd, rx));
        tx
    });
    let mut input = input;

    let mut outputs_open = true;
    let mut status: Option<Result<ExitStatus, RuntimeError>> = None;
    loop {
        if !outputs_open && status.is_some() {
            break;
        }
        tokio::select! {
            piece = output.recv(), if outputs_open => match piece {
                Some((channel, data)) => {
                    let mut frame = Vec::with_capacity(data.len() + 1);
                    frame.push(channel);
                    frame.extend_from_slice(&data);
                    if sink.send(Message::Binary(frame.into())).await.is_err() {
                        return;
                    }
                }
                None => outputs_open = false,
            },
            result = &mut exit, if status.is_none() => status = Some(result),
            message = incoming.next() => match message {
                Some(Ok(Message::Binary(data))) => {
                    handle_incoming(&data, v5, &mut input, terminal.as_ref());
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    // The client went: an attach detaches, an exec'd process loses its stdin.
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    let report = match (verb, status) {
        (_, Some(Err(err))) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &format!("the stream ended abnormally: {err}"),
            None,
        ),
        (Verb::Exec, Some(Ok(exit))) if exit.code != 0 => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "NonZeroExitCode",
            &format!(
                "command terminated with non-zero exit code: error executing command {:?}, exit code {}",
                streams.command, exit.code
            ),
            Some(exit.code),
        ),
        _ => json!({"metadata": {}, "status": "Success"}),
    };
    let _ = finish(&mut sink, report).await;
}

/// Acts on one message from the client.
fn handle_incoming(
    data: &[u8],
    v5: bool,
    input: &mut Option<mpsc::UnboundedSender<Bytes>>,
    terminal: Option<&Terminal>,
) {
    let Some((&channel, payload)) = data.split_first() else {
        return;
    };
    match channel {
        STDIN => {
            if let Some(tx) = input
                && !payload.is_empty()
            {
                let _ = tx.send(Bytes::copy_from_slice(payload));
            }
        }
        RESIZE => match (serde_json::from_slice::<Size>(payload), terminal) {
            (Ok(size), Some(terminal)) => {
                if let Err(err) = terminal.resize(size) {
                    tracing::debug!(%err, "resizing a terminal");
                }
            }
            (Err(err), _) => tracing::debug!(%err, "a resize message that is not a size"),
            (Ok(_), None) => {}
        },
        CLOSE if v5 && payload == [STDIN] => *input = None,
        _ => {}
    }
}

/// The status on channel 3, then a normal close.
async fn finish(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    report: Value,
) -> Result<(), axum::Error> {
    let mut frame = vec![ERROR];
    frame.extend(serde_json::to_vec(&report).unwrap_or_default());
    sink.send(Message::Binary(frame.into())).await?;
    sink.send(Message::Close(Some(CloseFrame {
        code: close_code::NORMAL,
        reason: "".into(),
    })))
    .await
}

/// A `metav1.Status` failure; an exit code comes as upstream's `ExitCode` cause.
fn failure(code: StatusCode, reason: &str, message: &str, exit_code: Option<i32>) -> Value {
    let mut status = json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(exit) = exit_code {
        status["details"] =
            json!({"causes": [{"reason": "ExitCode", "message": exit.to_string()}]});
    }
    status
}

/// A pipe or PTY master, read and written without blocking the runtime.
fn async_fd(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
    // SAFETY: the OwnedFd is moved into the AsyncFd, so the descriptor stays open, and names the same file
    // description, for as long as the AsyncFd lives.
    unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from)
}

async fn read_output(fd: OwnedFd, channel: u8, tx: Option<mpsc::Sender<(u8, Vec<u8>)>>) {
    let Ok(fd) = async_fd(fd) else {
        return;
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let Ok(mut ready) = fd.readable().await else {
            return;
        };
        match ready.try_io(|fd| Ok(nix::unistd::read(fd.as_raw_fd(), &mut buf)?)) {
            Ok(Ok(0)) => return,
            Ok(Ok(n)) => {
                if let Some(tx) = &tx
                    && tx.send((channel, buf[..n].to_vec())).await.is_err()
                {
                    return;
                }
            }
            // EIO: the PTY's last slave descriptor closed.
            Ok(Err(_)) => return,
            Err(_would_block) => continue,
        }
    }
}

async fn write_input(fd: OwnedFd, mut rx: mpsc::UnboundedReceiver<Bytes>) {
    let Ok(fd) = async_fd(fd) else {
        return;
    };
    while let Some(mut data) = rx.recv().await {
        while !data.is_empty() {
            let Ok(mut ready) = fd.writable().await else {
                return;
            };
            match ready.try_io(|fd| Ok(nix::unistd::write(fd.get_ref(), &data)?)) {
                Ok(Ok(n)) => {
                    let _ = data.split_to(n);
                }
                Ok(Err(_)) => return,
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_flags_take_both_spellings_and_every_command_argument() {
        let streams = Streams::parse(Some(
            "command=sh&command=-c&command=exit+3&input=1&output=1&tty=1",
        ))
        .unwrap();
        assert_eq!(
            streams,
            Streams {
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true,
                command: vec!["sh".into(), "-c".into(), "exit 3".into()],
            }
        );
        let streams = Streams::parse(Some("stdout=true&stderr=true")).unwrap();
        assert!(streams.stdout && streams.stderr && !streams.stdin && !streams.tty);
        assert!(Streams::parse(Some("command=ls")).is_err());
    }

    #[test]
    fn a_non_zero_exit_is_reported_with_its_code_as_upstream() {
        let status = failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "NonZeroExitCode",
            "m",
            Some(3),
        );
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
    }

    #[test]
    fn v5_close_of_stdin_drops_the_input_and_v4_ignores_it() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut input = Some(tx);
        handle_incoming(&[STDIN, b'a'], true, &mut input, None);
        assert_eq!(rx.try_recv().unwrap(), Bytes::from_static(b"a"));
        handle_incoming(&[CLOSE, STDIN], false, &mut input, None);
        assert!(input.is_some());
        handle_incoming(&[CLOSE, STDIN], true, &mut input, None);
        assert!(input.is_none());
    }
}
