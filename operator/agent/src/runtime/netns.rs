//! Named network namespaces, one per Pod, shared by its containers ([`super::ContainerConfig::netns`]): a
//! namespace with loopback up, kept alive by a bind mount of its `/proc` handle, as `ip netns add` does. The
//! networking of Pods (bridge, veths, addresses) is added on top by the network module.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

use super::Error;

/// Creates the network namespace `<dir>/<name>` with `lo` up and returns its path.
pub fn create(dir: &Path, name: &str) -> Result<PathBuf, Error> {
    super::config::validate_id(name)?;
    fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let path = dir.join(name);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(Error::io(format!("creating {}", path.display())))?;
    // unshare(CLONE_NEWNET) changes the calling thread only: a short-lived thread of its own keeps the agent's
    // threads in the host's namespace. The bind mount keeps the namespace once the thread is gone.
    let target = path.clone();
    let made = std::thread::spawn(move || -> Result<(), Error> {
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::io("unsharing the network namespace")(e.into()))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::io(format!("bind-mounting {}", target.display()))(e.into()))?;
        loopback_up()
    })
    .join()
    .unwrap_or_else(|_| {
        Err(Error::io("creating the network namespace")(
            std::io::Error::other("thread panicked"),
        ))
    });
    if let Err(err) = made {
        let _ = remove(&path);
        return Err(err);
    }
    Ok(path)
}

/// Removes a namespace made by [`create`]; it lives on while a container still uses it.
pub fn remove(path: &Path) -> Result<(), Error> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(err) => {
            return Err(Error::io(format!("unmounting {}", path.display()))(
                err.into(),
            ));
        }
    }
    match fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", path.display()))(err))
        }
        _ => Ok(()),
    }
}

/// `ip link set lo up`, with the SIOCSIFFLAGS ioctl (a netlink client would be a crate for one flag).
fn loopback_up() -> Result<(), Error> {
    let fail =
        |what: &str| Error::io(format!("bringing lo up: {what}"))(std::io::Error::last_os_error());
    // SAFETY: plain socket(2); the result is checked and owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(fail("socket"));
    }
    // SAFETY: `raw` is a new descriptor nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass, which outlives the calls.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(fail("SIOCGIFFLAGS"));
        }
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(fail("SIOCSIFFLAGS"));
        }
    }
    Ok(())
}
