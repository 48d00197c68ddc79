use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read};

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::common::{HTTPVersion, Method};
use crate::util::{Deadline, RefinedTcpStream};
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::Request;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    // Hearth patch: as accept() gave it (was asked again with getpeername, and unwrapped).
    remote_addr: Option<SocketAddr>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    /// Hearth patch: whether the connection may carry another request once the last one
    /// is answered; whoever answers can clear it (`Request::keep_alive`).
    keep_alive: Arc<AtomicBool>,

    /// Hearth patch: whether a request was read and not one byte of the next one yet:
    /// then the connection is kept alive and idle.
    between_requests: bool,

    /// Hearth patch: restarted for each request after the first.
    deadline: Deadline,

    /// Hearth patch: the plain socket answers go out on (`Request::answer_on_connection`).
    socket: Option<std::os::unix::io::RawFd>,

    /// Hearth patch: set once the server stops accepting (`Server::stop_accepting`), which
    /// ends keep-alive.
    closing: Arc<AtomicBool>,

    _open: Open,
}

/// Hearth patch: keep-alive is offered only while at most this many connections are open.
/// A connection kept alive holds its thread between requests: this bounds how many
/// threads idle clients can hold that way, and under a flood of connections every
/// answer says `Connection: close`, as before keep-alive was offered at all.
pub const KEEP_ALIVE_MAX: usize = 256;

/// Hearth patch: connections open now.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// Hearth patch: counts one open connection for as long as it lives.
struct Open;

impl Open {
    fn new() -> Open {
        OPEN.fetch_add(1, Ordering::Relaxed);
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// Hearth patch: a header line over MAX_LINE bytes, or over MAX_HEADERS lines
    HeaderTooLarge,
    /// Hearth patch: a connection kept alive ended, or stayed idle for the read timeout,
    /// before any byte of another request: it is closed without an answer.
    Idle,
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    /// Hearth patch: an HTTP version other than 1.0 and 1.1 (answered 505).
    VersionNotSupported,
    /// Hearth patch: a `Transfer-Encoding` other than `chunked` (answered 501).
    UnsupportedTransferEncoding,
    /// Hearth patch: a chunked body that does not decode (answered 400).
    BadChunkedBody,
    ReadIoError(IoError),
}

impl ReadError {
    /// Hearth patch: the answer owed for a request that could not be read (version, status,
    /// code, message); none to a client that is gone, or idle between requests.
    fn answer(self) -> Option<(HTTPVersion, u16, &'static str, &'static str)> {
        let v11 = HTTPVersion(1, 1);
        Some(match self {
            ReadError::HeaderTooLarge => {
                (v11, 431, "header_too_large", "a header line is over 8 KiB, or there are over 100 of them")
            }
            ReadError::WrongRequestLine => {
                (v11, 400, "bad_request", "the request line is not HTTP/1.x: METHOD PATH VERSION")
            }
            ReadError::WrongHeader(version) => (version, 400, "bad_request", "a header is malformed"),
            ReadError::BadChunkedBody => (v11, 400, "bad_request", "the chunked body is malformed"),
            // Linux reports SO_RCVTIMEO as WouldBlock.
            ReadError::ReadIoError(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                (v11, 408, "request_timeout", "the request did not arrive in time")
            }
            ReadError::ExpectationFailed(version) => {
                (version, 417, "expectation_failed", "only `Expect: 100-continue` is supported")
            }
            ReadError::UnsupportedTransferEncoding => (
                v11,
                501,
                "not_implemented",
                "only `Transfer-Encoding: chunked` is supported; or send a Content-Length",
            ),
            ReadError::VersionNotSupported => {
                (v11, 505, "http_version_not_supported", "this server speaks HTTP/1.0 and HTTP/1.1")
            }
            ReadError::ReadIoError(_) | ReadError::Idle => return None,
        })
    }
}

/// Hearth patch: the longest header line read, and the most header lines.
const MAX_LINE: usize = 8 * 1024;
const MAX_HEADERS: usize = 100;
const HEADER_TOO_LARGE: &str = "header too large";

/// Hearth patch: tiny_http's own error answers carry the JSON every Hearth error has.
fn json_error(status: u16, code: &str, error: &str) -> crate::Response<std::io::Cursor<Vec<u8>>> {
    let body = format!("{{\"code\":\"{code}\",\"error\":\"{error}\",\"message\":\"{error}\"}}");
    crate::Response::from_string(body)
        .with_status_code(crate::StatusCode(status))
        .with_header(crate::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]).unwrap())
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        read_socket: RefinedTcpStream,
        remote_addr: Option<SocketAddr>,
        closing: Arc<AtomicBool>,
    ) -> ClientConnection {
        let secure = read_socket.secure();
        let deadline = read_socket.deadline();
        let socket = write_socket.plain_fd();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            keep_alive: Arc::new(AtomicBool::new(true)),
            between_requests: false,
            deadline,
            socket,
            closing,
            _open: Open::new(),
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    fn read_next_line(&mut self) -> IoResult<AsciiString> {
        let mut buf = Vec::new();
        // Hearth patch: a line may not grow without bound (a 64 MiB header took 130 MB).
        let mut prev_byte_was_cr = false;

        loop {
            let byte = self.next_header_source.by_ref().bytes().next();

            let byte = match byte {
                Some(b) => b?,
                None => return Err(IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF")),
            };
            if self.between_requests {
                // Hearth patch: a request has begun to arrive on a connection kept alive:
                // it must arrive whole within the read timeout from here.
                self.between_requests = false;
                self.deadline.restart();
            }

            if buf.len() > MAX_LINE {
                return Err(IoError::new(ErrorKind::InvalidData, HEADER_TOO_LARGE));
            }

            if byte == b'\n' && prev_byte_was_cr {
                buf.pop(); // removing the '\r'
                return AsciiString::from_ascii(buf)
                    .map_err(|_| IoError::new(ErrorKind::InvalidInput, "Header is not in ASCII"));
            }

            prev_byte_was_cr = byte == b'\r';

            // Hearth patch: a byte outside ASCII (UTF-8 in a header value, which HTTP allows
            // as obs-text, or in a path) is kept as `?`. The connection was closed without
            // an answer before.
            buf.push(if byte.is_ascii() { byte } else { b'?' });
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        let too_large = |e: IoError| {
            if e.kind() == ErrorKind::InvalidData && e.to_string() == HEADER_TOO_LARGE {
                ReadError::HeaderTooLarge
            } else {
                ReadError::ReadIoError(e)
            }
        };
        // Hearth patch: on a connection kept alive, the wait for the next request ends at
        // the socket's read timeout, and the request's own deadline starts at its first byte.
        let kept = self.between_requests;
        if kept {
            self.deadline.clear();
        }
        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                let line = match self.read_next_line() {
                    // Not one byte of another request: the client is done, or idle.
                    Err(_) if kept && self.between_requests => return Err(ReadError::Idle),
                    line => line.map_err(too_large)?,
                };

                parse_request_line(
                    line.as_str().trim(), // TODO: remove this conversion
                )?
            };

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                loop {
                    let line = self.read_next_line().map_err(too_large)?;

                    if line.is_empty() {
                        break;
                    };
                    if headers.len() >= MAX_HEADERS {
                        return Err(ReadError::HeaderTooLarge);
                    }
                    headers.push(match FromStr::from_str(line.as_str().trim()) {
                        // TODO: remove this conversion
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };

        // building the writer for the request
        let writer = self.sink.next().unwrap();

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            self.remote_addr,
            data_source,
            writer,
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::BadContentLength => ReadError::WrongHeader(version.clone()),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
                request::RequestCreationError::UnsupportedTransferEncoding => ReadError::UnsupportedTransferEncoding,
                request::RequestCreationError::BadChunkedBody => ReadError::BadChunkedBody,
            }
        })?;

        // return the request
        Ok(request)
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        // Hearth patch: or whoever answered it closed the connection.
        if self.no_more_requests || !self.keep_alive.load(Ordering::SeqCst) || self.closing.load(Ordering::SeqCst) {
            return None;
        }

        let mut rq = match self.read() {
            Ok(rq) => rq,
            // Hearth patch: one place answers a request that cannot be read, and the
            // connection closes: where the next request would start is unknown.
            Err(e) => {
                if let Some((version, status, code, message)) = e.answer() {
                    let writer = self.sink.next().unwrap();
                    json_error(status, code, message).raw_print(writer, version, &[], false, None).ok();
                }
                return None;
            }
        };

        // Hearth patch: a version other than 1.0 and 1.1 was answered 505 by `read`.

        // updating the status of the connection
        let connection_header = rq
            .headers()
            .iter()
            .find(|h| h.field.equiv("Connection"))
            .map(|h| h.value.as_str());

        let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

        match lowercase {
            Some(ref val) if val.contains("close") => self.no_more_requests = true,
            Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
            Some(ref val)
                if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
            {
                self.no_more_requests = true
            }
            None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
            _ => (),
        };

        // Hearth patch: the connection is kept alive only for HTTP/1.1, when the body
        // was read to its end (so the next request starts where this one ended), and
        // while few connections are open. Otherwise the connection thread ends here,
        // and the socket closes as soon as the answer is written.
        self.between_requests = true;
        rq.set_socket(self.socket);
        if !self.no_more_requests
            && *rq.http_version() == HTTPVersion(1, 1)
            && rq.body_read_whole()
            && OPEN.load(Ordering::Relaxed) <= KEEP_ALIVE_MAX
            && !self.closing.load(Ordering::SeqCst)
        {
            rq.offer_keep_alive(Arc::clone(&self.keep_alive), Arc::clone(&self.closing));
        } else {
            self.no_more_requests = true;
        }

        // returning the request
        Some(rq)
    }
}

/// Parses a "HTTP/1.1" string.
/// Hearth patch: any other `HTTP/d.d` is answered 505 (HTTP/0.9 and 1.2 included, which
/// were served and refused 400), and anything else is not a request line.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    match version {
        "HTTP/1.0" => Ok(HTTPVersion(1, 0)),
        "HTTP/1.1" => Ok(HTTPVersion(1, 1)),
        _ => match version.strip_prefix("HTTP/").map(str::as_bytes) {
            Some([major, b'.', minor]) if major.is_ascii_digit() && minor.is_ascii_digit() => {
                Err(ReadError::VersionNotSupported)
            }
            Some([major]) if major.is_ascii_digit() => Err(ReadError::VersionNotSupported),
            _ => Err(ReadError::WrongRequestLine),
        },
    }
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let (Some(method), Some(path), Some(version)) = (method, path, parts.next()) else {
        return Err(ReadError::WrongRequestLine);
    };
    Ok((method, path, parse_http_version(version)?))
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}
