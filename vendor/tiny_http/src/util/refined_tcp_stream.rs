use std::io::Result as IoResult;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connection::Connection;
#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use crate::ssl::SslStream;

pub(crate) enum Stream {
    Http(Connection),
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    Https(SslStream),
}

impl Stream {
    /// Hearth patch: was `Clone`, which unwrapped, so a `dup` refused when file
    /// descriptors ran out panicked the accept thread and the server never accepted again.
    fn try_clone(&self) -> IoResult<Self> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.try_clone().map(Stream::Http),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => Ok(Stream::Https(ssl_stream.clone())),
        }
    }
}

impl From<Connection> for Stream {
    fn from(tcp_stream: Connection) -> Self {
        Stream::Http(tcp_stream)
    }
}

impl Stream {
    fn secure(&self) -> bool {
        match self {
            Stream::Http(_) => false,
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => true,
        }
    }

    fn shutdown(&mut self, how: Shutdown) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.shutdown(how),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.shutdown(how),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.read(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.write(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.write(buf),
        }
    }

    fn flush(&mut self) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.flush(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.flush(),
        }
    }
}

pub struct RefinedTcpStream {
    stream: Stream,
    close_read: bool,
    close_write: bool,
    /// Hearth patch: reading ends with `TimedOut` once this passes. The socket's own read
    /// timeout restarts with every byte, so a client sending one byte every few seconds
    /// would otherwise hold its connection thread for ever.
    read_deadline: Deadline,
}

/// Hearth patch: by when the request being read must have arrived: the socket's read
/// timeout after the accept, and on a connection kept alive after the request's first
/// byte (none while it waits for one). The connection holds a clone, to restart it.
#[derive(Clone)]
pub(crate) struct Deadline {
    limit: Option<Duration>,
    at: Arc<Mutex<Option<Instant>>>,
}

impl Deadline {
    fn new(limit: Option<Duration>) -> Deadline {
        let deadline = Deadline { limit, at: Arc::new(Mutex::new(None)) };
        deadline.restart();
        deadline
    }

    /// No deadline: while a connection kept alive waits for its next request, only the
    /// socket's own read timeout ends the wait.
    pub(crate) fn clear(&self) {
        *self.at.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    /// Counts the socket's read timeout from now.
    pub(crate) fn restart(&self) {
        let at = self.limit.map(|limit| Instant::now() + limit);
        *self.at.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = at;
    }

    fn passed(&self) -> bool {
        let at = *self.at.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        at.is_some_and(|at| Instant::now() >= at)
    }
}

impl RefinedTcpStream {
    /// Hearth patch: `read_limit` is the time a request has to arrive (the socket's read
    /// timeout): from now, and on a connection kept alive from each request's first byte.
    pub(crate) fn new<S>(stream: S, read_limit: Option<Duration>) -> IoResult<(RefinedTcpStream, RefinedTcpStream)>
    where
        S: Into<Stream>,
    {
        let stream: Stream = stream.into();

        let (read, write) = (stream.try_clone()?, stream);
        // Hearth patch: a request must arrive within the socket's read timeout, counted
        // from the accept, or on a connection kept alive from the request's first byte.
        let read_deadline = Deadline::new(read_limit);

        let read = RefinedTcpStream {
            stream: read,
            close_read: true,
            close_write: false,
            read_deadline,
        };

        let write = RefinedTcpStream {
            stream: write,
            close_read: false,
            close_write: true,
            read_deadline: Deadline::new(None),
        };

        Ok((read, write))
    }

    /// Returns true if this struct wraps around a secure connection.
    #[inline]
    pub(crate) fn secure(&self) -> bool {
        self.stream.secure()
    }

    /// Hearth patch: the socket, when it is plain (not TLS).
    pub(crate) fn plain_fd(&self) -> Option<std::os::unix::io::RawFd> {
        match &self.stream {
            Stream::Http(connection) => Some(connection.as_raw_fd()),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => None,
        }
    }

    /// Hearth patch: the read deadline, for the connection to restart.
    pub(crate) fn deadline(&self) -> Deadline {
        self.read_deadline.clone()
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.close_read {
            self.stream.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        // What arrived is taken first, so that closing after the 408 leaves nothing
        // unread (which would make the kernel reset the connection instead).
        let read = self.stream.read(buf)?;
        if self.read_deadline.passed() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the request took too long to arrive"));
        }
        Ok(read)
    }
}

impl Write for RefinedTcpStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        self.stream.flush()
    }
}
