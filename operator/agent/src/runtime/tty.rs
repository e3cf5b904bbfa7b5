//! Terminal sizes: `kubectl exec -t` and `kubectl attach -t` send the client's window size at the start and
//! on every change; it is set on the PTY master, and the kernel signals the foreground process (SIGWINCH).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use serde::{Deserialize, Serialize};

/// A terminal size in character cells, as the Kubernetes resize channel carries it
/// (`{"Width":80,"Height":24}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Size {
    pub width: u16,
    pub height: u16,
}

/// A PTY master kept to resize the terminal (a duplicate of the descriptor that carries its data).
#[derive(Debug)]
pub struct Terminal(OwnedFd);

impl Terminal {
    pub(crate) fn new(master: OwnedFd) -> Self {
        Self(master)
    }

    pub fn resize(&self, size: Size) -> std::io::Result<()> {
        resize(self.0.as_fd(), size)
    }
}

/// Sets the terminal size of the PTY whose master is `master` (TIOCSWINSZ).
pub fn resize(master: BorrowedFd<'_>, size: Size) -> std::io::Result<()> {
    let winsize = libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer, which lives across the call; the descriptor
    // is borrowed, so it stays open meanwhile.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &winsize) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn the_resize_message_is_kubernetes_json_and_sets_the_pty_size() {
        let size: Size = serde_json::from_str(r#"{"Width":120,"Height":40}"#).unwrap();
        assert_eq!(
            size,
            Size {
                width: 120,
                height: 40
            }
        );
        let pty = nix::pty::openpty(None, None).unwrap();
        resize(pty.master.as_fd(), size).unwrap();
        let mut got = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which outlives the call.
        let rc = unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut got) };
        assert_eq!(rc, 0);
        assert_eq!((got.ws_col, got.ws_row), (120, 40));
        let (pipe, _) = nix::unistd::pipe().unwrap();
        assert!(resize(pipe.as_fd(), size).is_err(), "a pipe has no size");
    }
}
