//! Where the collector listens: `host:port`, `unix:/path`, or a socket systemd passed in
//! (socket activation: `LISTEN_FDS` and `LISTEN_PID`, read without libsystemd).

use std::fmt;
use std::net::{TcpListener, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

/// The first file descriptor systemd passes.
const SD_LISTEN_FDS_START: RawFd = 3;

#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `spec`: `unix:/run/hearth/collector.sock`, or an address such as `127.0.0.1:8088`.
    pub fn bind(spec: &str) -> Result<Listener, String> {
        if let Some(path) = spec.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            // A socket file left by an earlier run would make bind fail; nothing else may be there.
            if std::fs::symlink_metadata(&path).is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            {
                let _ = std::fs::remove_file(&path);
            }
            let listener =
                UnixListener::bind(&path).map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
            return Ok(Listener::Unix(listener, path));
        }
        let addr = spec.to_socket_addrs().ok().and_then(|mut addrs| addrs.next()).ok_or_else(|| {
            format!(
                "--listen {spec} is not an address; write it like 127.0.0.1:8088 or unix:/run/hearth/collector.sock"
            )
        })?;
        TcpListener::bind(addr).map(Listener::Tcp).map_err(|e| format!("cannot listen on {addr}: {e}"))
    }

    /// The socket systemd passed, if this process was socket-activated.
    pub fn from_systemd() -> Result<Option<Listener>, String> {
        let ours = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
        let count = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse::<u32>().ok()).unwrap_or(0);
        if !ours || count == 0 {
            return Ok(None);
        }
        if count > 1 {
            return Err(format!(
                "systemd passed {count} sockets; hearth-collector.socket should have one ListenStream="
            ));
        }
        let fd = SD_LISTEN_FDS_START;
        // SAFETY: a zeroed sockaddr_storage is valid; getsockname fills it for a socket fd.
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if unsafe { libc::getsockname(fd, (&raw mut addr).cast(), &mut len) } != 0 {
            return Err(format!(
                "the socket systemd passed (fd {fd}) is not usable: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: systemd hands this process fd 3 as a listening socket it owns from now on;
        // nothing else in this process uses that descriptor.
        let listener = match i32::from(addr.ss_family) {
            libc::AF_UNIX => {
                let unix = unsafe { UnixListener::from_raw_fd(fd) };
                let path = unix.local_addr().ok().and_then(|a| a.as_pathname().map(PathBuf::from)).unwrap_or_default();
                Listener::Unix(unix, path)
            }
            _ => Listener::Tcp(unsafe { TcpListener::from_raw_fd(fd) }),
        };
        Ok(Some(listener))
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l, _) => l.as_raw_fd(),
        }
    }
}

impl Listener {
    /// Its address as a URL other programs on this host can reach (`http://127.0.0.1:8088`,
    /// the loopback address for one bound to every address); none for a Unix socket.
    pub fn local_url(&self) -> Option<String> {
        let Listener::Tcp(l) = self else { return None };
        let mut addr = l.local_addr().ok()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
        }
        Some(format!("http://{addr}"))
    }
}

impl fmt::Display for Listener {
    /// `http://127.0.0.1:8088` or `unix:/run/hearth/collector.sock`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(addr) => write!(f, "http://{addr}"),
                Err(_) => f.write_str("http://(unknown)"),
            },
            Listener::Unix(_, path) => write!(f, "unix:{}", path.display()),
        }
    }
}
