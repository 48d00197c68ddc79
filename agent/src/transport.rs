//! Talking to the collector: HTTPS through rustls (minreq), plain HTTP only where the
//! token cannot leave the local network, and collector errors turned into sentences.

use hearth_wire::ErrorBody;
use std::fmt;
use std::net::{IpAddr, ToSocketAddrs};

/// The largest answer body the agent reads from the collector.
const MAX_RESPONSE: usize = 64 * 1024;
/// The longest status line the agent reads (`HTTP/1.1 200 OK` is 15 bytes).
const MAX_STATUS_LINE: usize = 1024;
/// The most header bytes the agent reads.
const MAX_HEADERS: usize = 16 * 1024;

/// A collector's base URL, checked once.
#[derive(Debug, Clone, PartialEq)]
pub struct Collector {
    /// The URL without a trailing slash, e.g. `https://hearth.example.com`.
    pub base: String,
    pub host: String,
    pub port: u16,
    pub https: bool,
    allow_insecure_http: bool,
}

#[derive(Debug, PartialEq)]
pub enum SendError {
    /// The collector could not be reached, or answered something that is not Hearth.
    Network(String),
    /// The collector answered with an error.
    Rejected { status: u16, code: String, message: String },
    /// This configuration must not send (plain HTTP to a public address).
    Refused(String),
    /// The collector answered a redirect, which the agent does not follow: it would carry
    /// the token (or the enrolment token) to wherever the `Location` points.
    Redirected { status: u16, to: String },
}

impl SendError {
    /// Whether the agent's credentials were refused, so it must enrol again.
    pub fn is_auth(&self) -> bool {
        matches!(self, SendError::Rejected { status: 401 | 403, .. })
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Network(reason) | SendError::Refused(reason) => f.write_str(reason),
            SendError::Rejected { status, code, message } => {
                write!(f, "the collector answered {status} {code}: {message}")
            }
            SendError::Redirected { status, to } => write!(
                f,
                "the collector answered {status}, a redirect to {to}, which the agent does not follow \
                 (it would send the token there); set HEARTH_COLLECTOR_URL (--collector) to the URL \
                 the collector answers at"
            ),
        }
    }
}

impl Collector {
    pub fn parse(url: &str, allow_insecure_http: bool) -> Result<Collector, String> {
        let bad = |why: &str| format!("the collector URL `{url}` {why}; write it like https://hearth.example.com");
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad("must start with https:// or http://"));
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').ok_or_else(|| bad("has an unclosed ["))?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let port = port.map(|p| p.parse::<u16>().map_err(|_| bad("has a bad port"))).transpose()?;
        if host.is_empty() || authority.contains('@') {
            return Err(bad("has no host"));
        }
        let port = port.unwrap_or(if https { 443 } else { 80 });
        let base = url.trim_end_matches('/').to_owned();
        Ok(Collector { base, host: host.to_owned(), port, https, allow_insecure_http })
    }

    /// Refuses plain HTTP to anything but loopback and private addresses, because the token
    /// travels in a header. Returns `Network` if the name does not resolve (it may later).
    pub fn check_transport(&self) -> Result<(), SendError> {
        if self.https || self.allow_insecure_http || self.host == "localhost" {
            return Ok(());
        }
        let addrs: Vec<IpAddr> = match (self.host.as_str(), self.port).to_socket_addrs() {
            Ok(addrs) => addrs.map(|a| a.ip()).collect(),
            Err(e) => return Err(SendError::Network(format!("cannot resolve {}: {e}", self.host))),
        };
        if !addrs.is_empty() && addrs.iter().all(is_local) {
            return Ok(());
        }
        Err(SendError::Refused(format!(
            "refusing to send the agent token over plain http to {}, which is not a loopback or private address; \
             use https:// or pass --allow-insecure-http",
            self.host
        )))
    }

    /// POSTs a JSON body and returns the answer's body if the status is 2xx.
    /// Redirects are not followed, and every part of the answer is bounded.
    pub fn post(&self, path: &str, body: &str, token: Option<&str>, timeout_secs: u64) -> Result<String, SendError> {
        self.check_transport()?;
        let url = format!("{}{path}", self.base);
        let mut request = minreq::post(&url)
            .with_header("Content-Type", "application/json")
            .with_header("User-Agent", concat!("hearth-agent/", env!("CARGO_PKG_VERSION")))
            .with_body(body)
            .with_timeout(timeout_secs)
            .with_follow_redirects(false)
            .with_max_status_line_length(MAX_STATUS_LINE)
            .with_max_headers_size(MAX_HEADERS);
        if let Some(token) = token {
            request = request.with_header("Authorization", format!("Bearer {token}"));
        }
        if let Some(proxy) = self.proxy()? {
            request = request.with_proxy(proxy);
        }
        let response =
            request.send_lazy().map_err(|e| SendError::Network(format!("cannot reach {}: {e}", self.base)))?;
        let status = u16::try_from(response.status_code).unwrap_or(0);
        if (300..400).contains(&status) {
            let to = response.headers.get("location").map_or_else(|| "nowhere (no Location)".to_owned(), |l| origin(l));
            return Err(SendError::Redirected { status, to });
        }
        let bytes = response
            .take(MAX_RESPONSE + 1)
            .map(|byte| byte.map(|(b, _)| b))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|e| SendError::Network(format!("the answer from {} was cut off: {e}", self.base)))?;
        if bytes.len() > MAX_RESPONSE {
            return Err(SendError::Network(format!(
                "the answer from {} is longer than {} KiB, which no Hearth collector sends; check the collector URL",
                self.base,
                MAX_RESPONSE / 1024
            )));
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if (200..300).contains(&status) {
            return Ok(text);
        }
        Err(match miniserde::json::from_str::<ErrorBody>(&text) {
            Ok(err) => SendError::Rejected { status, code: err.code, message: err.error },
            Err(_) => SendError::Rejected {
                status,
                code: "unexpected".into(),
                message: format!(
                    "the answer was not from a Hearth collector: {}",
                    text.chars().take(120).collect::<String>()
                ),
            },
        })
    }

    /// The proxy from HTTPS_PROXY (or https_proxy) for https URLs.
    /// minreq 2.14 reads only the lower-case name, so both are read here.
    fn proxy(&self) -> Result<Option<minreq::Proxy>, SendError> {
        if !self.https {
            return Ok(None);
        }
        let Some(proxy) = ["HTTPS_PROXY", "https_proxy"].iter().find_map(|name| std::env::var(name).ok()) else {
            return Ok(None);
        };
        minreq::Proxy::new(proxy.as_str())
            .map(Some)
            .map_err(|e| SendError::Refused(format!("HTTPS_PROXY `{proxy}` is not usable: {e}")))
    }
}

/// The scheme and host of a redirect's `Location`, safe to log: no user, path or query.
fn origin(location: &str) -> String {
    let printable = |s: &str| s.chars().filter(char::is_ascii_graphic).take(100).collect::<String>();
    match location.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            format!("{}://{}", printable(scheme), printable(host))
        }
        None => "another path on the same host".to_owned(),
    }
}

/// Loopback, RFC 1918, link-local, CGNAT (Tailscale) and IPv6 unique-local addresses.
fn is_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let cases = [
            ("https://hearth.example.com", Some(("hearth.example.com", 443, true))),
            ("https://hearth.example.com:8443/base/", Some(("hearth.example.com", 8443, true))),
            ("http://127.0.0.1:8088", Some(("127.0.0.1", 8088, false))),
            ("http://[::1]:8088", Some(("::1", 8088, false))),
            ("http://[fd00::1]", Some(("fd00::1", 80, false))),
            ("ftp://x", None),
            ("https://", None),
            ("https://host:notaport", None),
            ("https://user@host", None),
        ];
        for (url, expected) in cases {
            let got = Collector::parse(url, false).ok().map(|c| (c.host.clone(), c.port, c.https));
            assert_eq!(got, expected.map(|(h, p, s)| (h.to_owned(), p, s)), "{url}");
        }
        assert_eq!(Collector::parse("https://x/base/", false).unwrap().base, "https://x/base");
    }

    #[test]
    fn plain_http_only_stays_local() {
        for url in [
            "http://127.0.0.1:1",
            "http://10.1.2.3",
            "http://192.168.1.10",
            "http://100.100.1.1",
            "http://[fd12::1]",
            "http://localhost:8088",
        ] {
            assert_eq!(Collector::parse(url, false).unwrap().check_transport(), Ok(()), "{url}");
        }
        for url in ["http://8.8.8.8", "http://[2001:db8::1]", "http://100.128.0.1"] {
            let err = Collector::parse(url, false).unwrap().check_transport().unwrap_err();
            assert!(matches!(&err, SendError::Refused(m) if m.contains("--allow-insecure-http")), "{url}: {err:?}");
            assert_eq!(Collector::parse(url, true).unwrap().check_transport(), Ok(()), "{url}");
        }
        assert_eq!(Collector::parse("https://8.8.8.8", false).unwrap().check_transport(), Ok(()));
    }

    #[test]
    fn redirect_origins() {
        for (location, expected) in [
            ("http://evil.example:8080/api/agent/heartbeat?x=1", "http://evil.example:8080"),
            ("https://user:pw@host/path", "https://host"),
            ("/elsewhere", "another path on the same host"),
            ("http://a\r\nb/", "http://ab"),
        ] {
            assert_eq!(origin(location), expected, "{location}");
        }
    }

    #[test]
    fn an_unreachable_collector_is_a_network_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let collector = Collector::parse(&format!("http://127.0.0.1:{port}"), false).unwrap();
        let err = collector.post("/x", "{}", None, 2).unwrap_err();
        assert!(matches!(err, SendError::Network(_)), "{err:?}");
    }
}
