//! TCP connections from inside a Pod's network namespace. `setns` changes the calling thread only, so the
//! socket is created on a short-lived thread of its own that enters the namespace and exits afterwards (never a
//! tokio worker or a reused blocking-pool thread); a socket keeps the namespace it was created in, so tokio then
//! connects and drives it like any other.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
use tokio::net::{TcpSocket, TcpStream};

/// Connects to `addr`, from inside `netns` when given (no timeout here: callers bound the whole probe).
pub(super) async fn connect(netns: Option<&Path>, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = match netns {
        None if addr.is_ipv4() => TcpSocket::new_v4()?,
        None => TcpSocket::new_v6()?,
        Some(netns) => {
            let netns = netns.to_path_buf();
            let family = if addr.is_ipv4() {
                AddressFamily::Inet
            } else {
                AddressFamily::Inet6
            };
            let (sender, receiver) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("probe-netns".into())
                .spawn(move || {
                    let _ = sender.send(socket_in(&netns, family));
                })?;
            let fd = receiver
                .await
                .map_err(|_| io::Error::other("the network namespace thread died"))??;
            TcpSocket::from_std_stream(std::net::TcpStream::from(fd))
        }
    };
    socket.connect(addr).await
}

/// A non-blocking TCP socket in the network namespace at `netns`. Runs on a thread that is thrown away after.
fn socket_in(netns: &Path, family: AddressFamily) -> io::Result<OwnedFd> {
    let namespace = std::fs::File::open(netns).map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("opening network namespace {}: {err}", netns.display()),
        )
    })?;
    setns(&namespace, CloneFlags::CLONE_NEWNET).map_err(|err| {
        io::Error::other(format!(
            "entering network namespace {}: {err}",
            netns.display()
        ))
    })?;
    Ok(socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?)
}

/// An I/O error as Go's net package words it in `dial tcp ADDR: …` (upstream's probe messages).
pub(super) fn describe(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        io::ErrorKind::HostUnreachable => "connect: no route to host".into(),
        io::ErrorKind::NetworkUnreachable => "connect: network is unreachable".into(),
        io::ErrorKind::ConnectionReset => "read: connection reset by peer".into(),
        _ => err.to_string(),
    }
}
