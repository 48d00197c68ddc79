use std::io::Error as IoError;
use std::io::{self, Cursor, ErrorKind, Read, Write};

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use crate::util::{EqualReader, FusedReader};
use crate::{HTTPVersion, Header, Method, Response, StatusCode};
use chunked_transfer::Decoder;

/// Represents an HTTP request made by a client.
///
/// A `Request` object is what is produced by the server, and is your what
/// your code must analyse and answer.
///
/// This object implements the `Send` trait, therefore you can dispatch your requests to
/// worker threads.
///
/// # Pipelining
///
/// If a client sends multiple requests in a row (without waiting for the response), then you will
/// get multiple `Request` objects simultaneously. This is called *requests pipelining*.
/// Tiny-http automatically reorders the responses so that you don't need to worry about the order
/// in which you call `respond` or `into_writer`.
///
/// This mechanic is disabled if:
///
///  - The body of a request is large enough (handling requires pipelining requires storing the
///    body of the request in a buffer ; if the body is too big, tiny-http will avoid doing that)
///  - A request sends a `Expect: 100-continue` header (which means that the client waits to
///    know whether its body will be processed before sending it)
///  - A request sends a `Connection: close` header or `Connection: upgrade` header (used for
///    websockets), which indicates that this is the last request that will be received on this
///    connection
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `into_writer` or `respond` being called,
/// an empty response with a 500 status code (internal server error) will automatically be
/// sent back to the client.
/// This means that if your code fails during the handling of a request, this "internal server
/// error" response will automatically be sent during the stack unwinding.
///
/// # Testing
///
/// If you want to build fake requests to test your server, use [`TestRequest`](crate::test::TestRequest).
pub struct Request {
    // where to read the body from
    data_reader: Option<Box<dyn Read + Send + 'static>>,

    // if this writer is empty, then the request has been answered
    response_writer: Option<Box<dyn Write + Send + 'static>>,

    remote_addr: Option<SocketAddr>,

    // true if HTTPS, false if HTTP
    secure: bool,

    method: Method,

    path: String,

    http_version: HTTPVersion,

    headers: Vec<Header>,

    body_length: Option<usize>,

    // true if a `100 Continue` response must be sent when `as_reader()` is called
    must_send_continue: bool,

    // If Some, a message must be sent after responding
    notify_when_responded: Option<Sender<Answered>>,

    // Hearth patch: what the server's `prepare` hook made of this request on the
    // connection's own thread, for whoever handles it.
    prepared: Option<Box<dyn std::any::Any + Send + 'static>>,

    // Hearth patch: whether the body was read to its end when the request was made.
    body_whole: bool,

    // Hearth patch: the plain socket the answer goes out on, to ask whether anything
    // written before is still queued in it (`answer_on_connection`).
    socket: Option<std::os::unix::io::RawFd>,

    // Hearth patch: set when the connection will carry another request after this one's
    // answer, unless whoever answers clears it first or the server closes (`KeepAlive`).
    keep_alive: Option<(Arc<AtomicBool>, Arc<AtomicBool>)>,
}

/// Hearth patch: whether a request's connection stays open for another request after its
/// answer. The answer must say `Connection: close` unless `offered()`; after `refuse()`,
/// the connection closes once the answer is written.
#[derive(Clone)]
pub struct KeepAlive(Option<(Arc<AtomicBool>, Arc<AtomicBool>)>);

impl KeepAlive {
    /// Whether the connection will carry another request: HTTP/1.1, no `Connection:
    /// close`, the body read to its end, few connections open, and not refused.
    pub fn offered(&self) -> bool {
        self.0.as_ref().is_some_and(|(keep, closing)| keep.load(Ordering::SeqCst) && !closing.load(Ordering::SeqCst))
    }

    /// Closes the connection once the answer is written: say so before it is, or, when
    /// writing it failed, before the writer is dropped.
    pub fn refuse(&self) {
        if let Some((keep, _)) = &self.0 {
            keep.store(false, Ordering::SeqCst);
        }
    }
}

/// Hearth patch: what the connection's thread is told once a request is answered: nothing
/// more, or the answer for it to write (`Request::answer_on_connection`).
pub(crate) type Answered = Option<(Box<dyn Write + Send + 'static>, Vec<u8>)>;

/// Hearth patch: writes a whole answer and lets its writer go; if the answer did not go
/// out whole, the connection closes after it.
pub(crate) fn write_whole(mut writer: Box<dyn Write + Send + 'static>, answer: &[u8], keep_alive: &KeepAlive) {
    if writer.write_all(answer).and_then(|()| writer.flush()).is_err() {
        keep_alive.refuse();
    }
}

struct NotifyOnDrop<R> {
    sender: Sender<Answered>,
    // Hearth patch: an Option, so that it is dropped before the notice goes (below).
    inner: Option<R>,
}

impl<R> NotifyOnDrop<R> {
    fn new(sender: Sender<Answered>, inner: R) -> NotifyOnDrop<R> {
        NotifyOnDrop { sender, inner: Some(inner) }
    }

    fn inner(&mut self) -> &mut R {
        self.inner.as_mut().expect("present until dropped")
    }
}

impl<R: Read> Read for NotifyOnDrop<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner().read(buf)
    }
}
impl<R: Write> Write for NotifyOnDrop<R> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner().flush()
    }
}
impl<R> Drop for NotifyOnDrop<R> {
    fn drop(&mut self) {
        // Hearth patch: the writer goes first, which lets the next answer's writer write;
        // then the connection may read its next request. The other way round, whoever
        // answered that next request could wait for this writer to be dropped. A
        // connection thread that is gone needs no notice (was a panic).
        drop(self.inner.take());
        let _ = self.sender.send(None);
    }
}

/// Hearth patch: bodies up to this size are read in full by the connection's thread.
/// Hearth's own limit (64 KiB) must not be larger.
pub const BUFFERED_BODY: usize = 100 * 1024;

/// Error that can happen when building a `Request` object.
#[derive(Debug)]
pub enum RequestCreationError {
    /// The client sent an `Expect` header that was not recognized by tiny-http.
    ExpectationFailed,

    /// Error while reading data from the socket during the creation of the `Request`.
    CreationIoError(IoError),

    /// Hearth patch: more than one `Content-Length`, or one that is not digits: where the
    /// body ends, and so where the next request starts, is in doubt.
    BadContentLength,

    /// Hearth patch: a `Transfer-Encoding` other than `chunked` alone (answered 501).
    UnsupportedTransferEncoding,

    /// Hearth patch: a chunked body that does not decode (answered 400).
    BadChunkedBody,
}

impl From<IoError> for RequestCreationError {
    fn from(err: IoError) -> RequestCreationError {
        RequestCreationError::CreationIoError(err)
    }
}

/// Builds a new request.
///
/// After the request line and headers have been read from the socket, a new `Request` object
/// is built.
///
/// You must pass a `Read` that will allow the `Request` object to read from the incoming data.
/// It is the responsibility of the `Request` to read only the data of the request and not further.
///
/// The `Write` object will be used by the `Request` to write the response.
#[allow(clippy::too_many_arguments)]
pub fn new_request<R, W>(
    secure: bool,
    method: Method,
    path: String,
    version: HTTPVersion,
    headers: Vec<Header>,
    remote_addr: Option<SocketAddr>,
    mut source_data: R,
    mut writer: W,
) -> Result<Request, RequestCreationError>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    // finding the transfer-encoding header
    let transfer_encoding = headers
        .iter()
        .find(|h: &&Header| h.field.equiv("Transfer-Encoding"))
        .map(|h| h.value.clone());

    // finding the content-length header
    let content_length = if transfer_encoding.is_some() {
        // if transfer-encoding is specified, the Content-Length
        // header must be ignored (RFC2616 #4.4)
        None
    } else {
        // Hearth patch: digits only (`usize::from_str` takes a leading `+`).
        headers
            .iter()
            .find(|h: &&Header| h.field.equiv("Content-Length"))
            .filter(|h| !h.value.is_empty() && h.value.as_bytes().iter().all(u8::is_ascii_digit))
            .and_then(|h| usize::from_str(h.value.as_str()).ok())
    };

    // true if the client sent a `Expect: 100-continue` header
    let expects_continue = {
        match headers
            .iter()
            .find(|h: &&Header| h.field.equiv("Expect"))
            .map(|h| h.value.as_str())
        {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
            _ => return Err(RequestCreationError::ExpectationFailed),
        }
    };

    // Hearth patch: `Connection: upgrade` no longer hands the raw socket over as the body:
    // nothing here upgrades, so such a request is read and answered like any other (and
    // its connection closed after), rather than waiting for the client to close.

    // Hearth patch: only `chunked` is decoded; any other coding is refused, not decoded
    // as chunked.
    if transfer_encoding.as_ref().is_some_and(|coding| !coding.as_str().trim().eq_ignore_ascii_case("chunked")) {
        return Err(RequestCreationError::UnsupportedTransferEncoding);
    }
    // Hearth patch: `100 Continue` goes out before a body this thread reads (chunked ones
    // too), and never to an HTTP/1.0 client (RFC 9110).
    let expects_continue = expects_continue && version == HTTPVersion(1, 1);
    let reads_body_here =
        transfer_encoding.is_some() || content_length.is_some_and(|length| length > 0 && length <= BUFFERED_BODY);
    let mut continue_sent = false;
    if expects_continue && reads_body_here {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        writer.flush()?;
        continue_sent = true;
    }
    // Hearth patch: a body whose length is in doubt is refused (400), as RFC 9112 asks.
    let lengths = headers.iter().filter(|h| h.field.equiv("Content-Length")).count();
    if transfer_encoding.is_none() && (lengths > 1 || (lengths == 1 && content_length.is_none())) {
        return Err(RequestCreationError::BadContentLength);
    }
    // Hearth patch: whether the body is read to its end below, so that the next request
    // on the connection starts where this one ends.
    let body_whole = transfer_encoding.is_none()
        && content_length.map_or(true, |length| length <= BUFFERED_BODY);
    // we wrap `source_data` around a reading whose nature depends on the transfer-encoding and
    // content-length headers
    let reader = if let Some(content_length) = content_length {
        if content_length == 0 {
            Box::new(io::empty()) as Box<dyn Read + Send + 'static>
        } else if content_length <= BUFFERED_BODY {
            // Hearth patch: bodies up to BUFFERED_BODY (was 1 KiB) are read here, on the
            // connection's own thread, so the thread that handles requests never waits on
            // a slow client. `Expect: 100-continue` was answered above.
            let mut buffer = Vec::with_capacity(content_length.min(8192));
            source_data.by_ref().take(content_length as u64).read_to_end(&mut buffer)?;
            if buffer.len() != content_length {
                // the socket returned EOF, but we were before the expected content-length
                let info = "Connection has been closed before we received enough data";
                let err = IoError::new(ErrorKind::ConnectionAborted, info);
                return Err(RequestCreationError::CreationIoError(err));
            }
            Box::new(Cursor::new(buffer)) as Box<dyn Read + Send + 'static>
        } else {
            let (data_reader, _) = EqualReader::new(source_data, content_length); // TODO:
            Box::new(FusedReader::new(data_reader)) as Box<dyn Read + Send + 'static>
        }
    } else if transfer_encoding.is_some() {
        // if a transfer-encoding was specified, then "chunked" is ALWAYS applied
        // over the message (RFC2616 #3.6)
        // Hearth patch: read here too, up to one byte past BUFFERED_BODY, so that the
        // handler sees the body is too large without reading from the socket.
        let mut buffer = Vec::new();
        let decoded = Decoder::new(source_data).take(BUFFERED_BODY as u64 + 1).read_to_end(&mut buffer);
        match decoded {
            Ok(_) => {}
            // A timeout is answered 408, and a client gone needs no answer.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset) => {
                return Err(RequestCreationError::CreationIoError(e))
            }
            Err(_) => return Err(RequestCreationError::BadChunkedBody),
        }
        Box::new(Cursor::new(buffer)) as Box<dyn Read + Send + 'static>
    } else {
        // if we have neither a Content-Length nor a Transfer-Encoding,
        // assuming that we have no data
        // TODO: could also be multipart/byteranges
        Box::new(io::empty()) as Box<dyn Read + Send + 'static>
    };

    Ok(Request {
        data_reader: Some(reader),
        response_writer: Some(Box::new(writer) as Box<dyn Write + Send + 'static>),
        remote_addr,
        secure,
        method,
        path,
        http_version: version,
        headers,
        body_length: content_length,
        must_send_continue: expects_continue && !continue_sent,
        notify_when_responded: None,
        prepared: None,
        body_whole,
        socket: None,
        keep_alive: None,
    })
}

impl Request {
    /// Hearth patch: keeps what the server's `prepare` hook made of this request.
    pub fn set_prepared(&mut self, prepared: Box<dyn std::any::Any + Send + 'static>) {
        self.prepared = Some(prepared);
    }

    /// Hearth patch: takes what the server's `prepare` hook made of this request, if anything.
    pub fn take_prepared(&mut self) -> Option<Box<dyn std::any::Any + Send + 'static>> {
        self.prepared.take()
    }

    /// Hearth patch: hands `answer` (the whole response, status line to body) to the
    /// connection's own thread to write, when that thread waits for this request to be
    /// answered (any request after a connection's first): a client that does not read its
    /// answers then holds up its own connection's thread and no other. Gives both back
    /// otherwise, for the caller to write.
    /// An answer that finds nothing queued ahead of it in the socket (`queue_empty`, asked
    /// of a plain socket's descriptor) goes out at once, as on a fresh connection, without
    /// waking the connection's thread for it.
    pub fn answer_on_connection(
        mut self,
        answer: Vec<u8>,
        queue_empty: impl Fn(std::os::unix::io::RawFd) -> bool,
    ) -> Result<(), (Request, Vec<u8>)> {
        let Some(sender) = self.notify_when_responded.take() else {
            return Err((self, answer));
        };
        let writer = self.extract_writer_impl();
        if self.socket.is_some_and(queue_empty) {
            write_whole(writer, &answer, &self.keep_alive());
            let _ = sender.send(None);
        } else {
            let _ = sender.send(Some((writer, answer)));
        }
        Ok(())
    }

    /// Hearth patch: the plain socket this request's answer goes out on.
    pub(crate) fn set_socket(&mut self, socket: Option<std::os::unix::io::RawFd>) {
        self.socket = socket;
    }

    /// Hearth patch: whether the connection stays open after this request's answer.
    pub fn keep_alive(&self) -> KeepAlive {
        KeepAlive(self.keep_alive.clone())
    }

    /// Hearth patch: whether the body was read to its end, so that another request on
    /// the same connection starts where this one ends.
    pub(crate) fn body_read_whole(&self) -> bool {
        self.body_whole
    }

    /// Hearth patch: the connection will carry another request after this one's answer,
    /// unless `keep` is cleared or `closing` set by then.
    pub(crate) fn offer_keep_alive(&mut self, keep: Arc<AtomicBool>, closing: Arc<AtomicBool>) {
        self.keep_alive = Some((keep, closing));
    }

    /// Returns true if the request was made through HTTPS.
    #[inline]
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// Returns the length of the body in bytes.
    ///
    /// Returns `None` if the length is unknown.
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        self.body_length
    }

    /// Returns the address of the client that sent this request.
    ///
    /// The address is always `Some` for TCP listeners, but always `None` for UNIX listeners
    /// (as the remote address of a UNIX client is almost always unnamed).
    ///
    /// Note that this is gathered from the socket. If you receive the request from a proxy,
    /// this function will return the address of the proxy and not the address of the actual
    /// user.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// Sends a response with a `Connection: upgrade` header, then turns the `Request` into a `Stream`.
    ///
    /// The main purpose of this function is to support websockets.
    /// If you detect that the request wants to use some kind of protocol upgrade, you can
    ///  call this function to obtain full control of the socket stream.
    ///
    /// If you call this on a non-websocket request, tiny-http will wait until this `Stream` object
    ///  is destroyed before continuing to read or write on the socket. Therefore you should always
    ///  destroy it as soon as possible.
    pub fn upgrade<R: Read>(
        mut self,
        protocol: &str,
        response: Response<R>,
    ) -> Box<dyn ReadWrite + Send> {
        use crate::util::CustomStream;

        response
            .raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                false,
                Some(protocol),
            )
            .ok(); // TODO: unused result

        self.response_writer.as_mut().unwrap().flush().ok(); // TODO: unused result

        let stream = CustomStream::new(self.extract_reader_impl(), self.extract_writer_impl());
        if let Some(sender) = self.notify_when_responded.take() {
            let stream = NotifyOnDrop::new(sender, stream);
            Box::new(stream) as Box<dyn ReadWrite + Send>
        } else {
            Box::new(stream) as Box<dyn ReadWrite + Send>
        }
    }

    /// Allows to read the body of the request.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # extern crate rustc_serialize;
    /// # extern crate tiny_http;
    /// # use rustc_serialize::json::Json;
    /// # use std::io::Read;
    /// # fn get_content_type(_: &tiny_http::Request) -> &'static str { "" }
    /// # fn main() {
    /// # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
    /// let mut request = server.recv().unwrap();
    ///
    /// if get_content_type(&request) == "application/json" {
    ///     let mut content = String::new();
    ///     request.as_reader().read_to_string(&mut content).unwrap();
    ///     let json: Json = content.parse().unwrap();
    /// }
    /// # }
    /// ```
    ///
    /// If the client sent a `Expect: 100-continue` header with the request, calling this
    ///  function will send back a `100 Continue` response.
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        if self.must_send_continue {
            let msg = Response::new_empty(StatusCode(100));
            msg.raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                true,
                None,
            )
            .ok();
            self.response_writer.as_mut().unwrap().flush().ok();
            self.must_send_continue = false;
        }

        self.data_reader.as_mut().unwrap()
    }

    /// Turns the `Request` into a writer.
    ///
    /// The writer has a raw access to the stream to the user.
    /// This function is useful for things like CGI.
    ///
    /// Note that the destruction of the `Writer` object may trigger
    /// some events. For exemple if a client has sent multiple requests and the requests
    /// have been processed in parallel, the destruction of a writer will trigger
    /// the writing of the next response.
    /// Therefore you should always destroy the `Writer` as soon as possible.
    #[inline]
    pub fn into_writer(mut self) -> Box<dyn Write + Send + 'static> {
        let writer = self.extract_writer_impl();
        if let Some(sender) = self.notify_when_responded.take() {
            let writer = NotifyOnDrop::new(sender, writer);
            Box::new(writer) as Box<dyn Write + Send + 'static>
        } else {
            writer
        }
    }

    /// Extract the response `Writer` object from the Request, dropping this `Writer` has the same side effects
    /// as the object returned by `into_writer` above.
    ///
    /// This may only be called once on a single request.
    fn extract_writer_impl(&mut self) -> Box<dyn Write + Send + 'static> {
        use std::mem;

        assert!(self.response_writer.is_some());

        let mut writer = None;
        mem::swap(&mut self.response_writer, &mut writer);
        writer.unwrap()
    }

    /// Extract the body `Reader` object from the Request.
    ///
    /// This may only be called once on a single request.
    fn extract_reader_impl(&mut self) -> Box<dyn Read + Send + 'static> {
        use std::mem;

        assert!(self.data_reader.is_some());

        let mut reader = None;
        mem::swap(&mut self.data_reader, &mut reader);
        reader.unwrap()
    }

    /// Sends a response to this request.
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        // Hearth patch: tiny_http's own answers say `Connection: close` (src/response.rs).
        self.keep_alive().refuse();
        let res = self.respond_impl(response);
        if let Some(sender) = self.notify_when_responded.take() {
            let _ = sender.send(None);
        }
        res
    }

    fn respond_impl<R>(&mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let mut writer = self.extract_writer_impl();

        let do_not_send_body = self.method == Method::Head;

        Self::ignore_client_closing_errors(response.raw_print(
            writer.by_ref(),
            self.http_version.clone(),
            &self.headers,
            do_not_send_body,
            None,
        ))?;

        Self::ignore_client_closing_errors(writer.flush())
    }

    fn ignore_client_closing_errors(result: io::Result<()>) -> io::Result<()> {
        result.or_else(|err| match err.kind() {
            ErrorKind::BrokenPipe => Ok(()),
            ErrorKind::ConnectionAborted => Ok(()),
            ErrorKind::ConnectionRefused => Ok(()),
            ErrorKind::ConnectionReset => Ok(()),
            _ => Err(err),
        })
    }

    pub(crate) fn with_notify_sender(mut self, sender: Sender<Answered>) -> Self {
        self.notify_when_responded = Some(sender);
        self
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.response_writer.is_some() {
            self.keep_alive().refuse();
            let response = Response::empty(500);
            // Hearth patch: when the connection's thread waits for this answer, it writes
            // it: the thread dropping the request (one unwinding from a panic) must not wait
            // on a client that has answers unread.
            if let Some(sender) = self.notify_when_responded.take() {
                let mut answer = Vec::new();
                let head_only = self.method == Method::Head;
                let _ = response.raw_print(&mut answer, self.http_version.clone(), &self.headers, head_only, None);
                let writer = self.extract_writer_impl();
                let _ = sender.send(Some((writer, answer)));
                return;
            }
            let _ = self.respond_impl(response); // ignoring any potential error
        }
    }
}

/// Dummy trait that regroups the `Read` and `Write` traits.
///
/// Automatically implemented on all types that implement both `Read` and `Write`.
pub trait ReadWrite: Read + Write {}
impl<T> ReadWrite for T where T: Read + Write {}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn must_be_send() {
        #![allow(dead_code)]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}
