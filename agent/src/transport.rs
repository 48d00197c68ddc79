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
    proxies: ProxyEnv,
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
        Ok(Collector { base, host: host.to_owned(), port, https, allow_insecure_http, proxies: ProxyEnv::default() })
    }

    /// Uses the proxy settings the agent was started with (see [`ProxyEnv::take`]).
    pub fn with_proxies(mut self, proxies: ProxyEnv) -> Collector {
        self.proxies = proxies;
        self
    }

    /// Refuses plain HTTP to anything but loopback and private addresses, because the token
    /// travels in a header; the same goes for a proxy that plain HTTP would pass through.
    /// Returns `Network` if a name does not resolve (it may later).
    pub fn check_transport(&self) -> Result<(), SendError> {
        self.route().map(drop)
    }

    /// [`Collector::check_transport`], returning the proxy the request goes through, if any.
    fn route(&self) -> Result<Option<minreq::Proxy>, SendError> {
        let proxy = self.proxy()?;
        if self.https || self.allow_insecure_http {
            return Ok(proxy);
        }
        match stays_local(&self.host, self.port) {
            Ok(true) => Ok(proxy),
            Ok(false) => Err(SendError::Refused(format!(
                "refusing to send the agent token over plain http to {}, which is not a loopback or private \
                 address; use https:// or pass --allow-insecure-http",
                self.host
            ))),
            Err(e) => Err(SendError::Network(format!("cannot resolve {}: {e}", self.host))),
        }
    }

    /// POSTs a JSON body and returns the answer's body if the status is 2xx.
    /// Redirects are not followed, and every part of the answer is bounded.
    pub fn post(&self, path: &str, body: &str, token: Option<&str>, timeout_secs: u64) -> Result<String, SendError> {
        self.post_hiding(path, body, token, &[], timeout_secs)
    }

    /// [`Collector::post`], whose error shows the answer without `token` or any of
    /// `secrets` (an enrolment token in the body): a proxy or a stand-in server that
    /// echoes the request would otherwise put them in the journal.
    pub fn post_hiding(
        &self,
        path: &str,
        body: &str,
        token: Option<&str>,
        secrets: &[&str],
        timeout_secs: u64,
    ) -> Result<String, SendError> {
        let proxy = self.route()?;
        let url = format!("{}{path}", self.base);
        let mut request = minreq::post(&url)
            .with_header("Content-Type", "application/json")
            .with_header("User-Agent", concat!("hearth-agent/", env!("CARGO_PKG_VERSION")))
            // One request per connection (the next heartbeat is an interval away): saying so
            // lets the collector close it at once rather than wait for another request.
            .with_header("Connection", "close")
            .with_body(body)
            .with_timeout(timeout_secs)
            .with_follow_redirects(false)
            .with_max_status_line_length(MAX_STATUS_LINE)
            .with_max_headers_size(MAX_HEADERS);
        if let Some(token) = token {
            request = request.with_header("Authorization", format!("Bearer {token}"));
        }
        if let Some(proxy) = proxy {
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
        let text = token
            .into_iter()
            .chain(secrets.iter().copied())
            .map(str::trim)
            .filter(|s| s.len() >= 8)
            .fold(text, |text, secret| text.replace(secret, "[hidden]"));
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

    /// The proxy for this collector, from the variables curl reads: `https_proxy` or
    /// `HTTPS_PROXY` for https, `http_proxy` for http (curl ignores `HTTP_PROXY`), else
    /// `all_proxy` or `ALL_PROXY`. Plain http through a proxy shows the proxy the token, so
    /// such a proxy must pass the rule a plain-http collector must pass. Through https the
    /// proxy only relays TLS, checked end to end, so any proxy will do.
    fn proxy(&self) -> Result<Option<minreq::Proxy>, SendError> {
        let names: &[&str] = if self.https {
            &["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
        } else {
            &["http_proxy", "all_proxy", "ALL_PROXY"]
        };
        let Some((name, value)) = self.proxies.first(names) else {
            return Ok(None);
        };
        // The value is not repeated in errors: it may hold the proxy's password.
        let proxy = minreq::Proxy::new(value).map_err(|e| {
            SendError::Refused(format!(
                "the proxy in {name} is not usable ({e}); write it like http://proxy.example.com:3128, or unset {name}"
            ))
        })?;
        if self.https || self.allow_insecure_http {
            return Ok(Some(proxy));
        }
        let (host, port) = proxy_address(value);
        match stays_local(&host, port) {
            Ok(true) => Ok(Some(proxy)),
            Ok(false) => Err(SendError::Refused(format!(
                "refusing to send the agent token over plain http through the proxy {host} ({name}), which is \
                 not a loopback or private address; unset {name}, use https://, or pass --allow-insecure-http"
            ))),
            Err(e) => Err(SendError::Network(format!("cannot resolve the proxy {host} ({name}): {e}"))),
        }
    }
}

/// The proxy variables the agent honours; minreq reads the lower-case ones by itself.
const PROXY_VARS: [&str; 5] = ["https_proxy", "HTTPS_PROXY", "http_proxy", "all_proxy", "ALL_PROXY"];

/// The proxy settings the agent was started with: each variable of [`PROXY_VARS`] that is set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyEnv(Vec<(&'static str, String)>);

impl ProxyEnv {
    /// Reads the proxy variables and removes them from this process's environment, so that
    /// minreq, which reads `http_proxy` and `https_proxy` by itself whenever it is given no
    /// proxy, only ever uses one that [`Collector::check_transport`]'s rule allowed.
    /// Call it first thing in `main`, before any other thread exists.
    pub fn take() -> ProxyEnv {
        let proxies = ProxyEnv::read(&|name| std::env::var(name).ok());
        for name in PROXY_VARS {
            std::env::remove_var(name);
        }
        proxies
    }

    /// The proxy variables as `env` sees them; empty ones count as unset, as in curl.
    pub fn read(env: &dyn Fn(&str) -> Option<String>) -> ProxyEnv {
        ProxyEnv(
            PROXY_VARS
                .into_iter()
                .filter_map(|name| Some((name, env(name).filter(|v| !v.trim().is_empty())?)))
                .collect(),
        )
    }

    /// The first of `names` that is set.
    fn first(&self, names: &[&str]) -> Option<(&'static str, &str)> {
        names.iter().find_map(|want| self.0.iter().find(|(name, _)| name == want)).map(|(n, v)| (*n, v.as_str()))
    }
}

/// Whether `host` is `localhost` or resolves only to loopback and private addresses.
fn stays_local(host: &str, port: u16) -> Result<bool, std::io::Error> {
    if host == "localhost" {
        return Ok(true);
    }
    let addrs: Vec<IpAddr> = (host, port).to_socket_addrs()?.map(|a| a.ip()).collect();
    Ok(!addrs.is_empty() && addrs.iter().all(is_local))
}

/// A proxy's host and port as minreq reads them: `[http://][user[:password]@]host[:port]`, port 8080.
fn proxy_address(value: &str) -> (String, u16) {
    let authority = value.split_once("://").map_or(value, |(_, rest)| rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, rest)| rest);
    match host_port.split_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().unwrap_or(8080)),
        None => (host_port.to_owned(), 8080),
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

    /// The proxy a collector URL gets from `vars`: `Ok(Some(proxy as given))`, `Ok(None)` for
    /// a direct connection, or `Err` with words the refusal must hold.
    fn check_proxy(
        url: &str,
        allow_insecure_http: bool,
        vars: &[(&str, &str)],
        expected: Result<Option<&str>, &[&str]>,
    ) {
        let env = |name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned());
        let collector = Collector::parse(url, allow_insecure_http).unwrap().with_proxies(ProxyEnv::read(&env));
        let got = collector.proxy();
        match expected {
            Ok(proxy) => assert_eq!(got, Ok(proxy.map(|p| minreq::Proxy::new(p).unwrap())), "{url} {vars:?}"),
            Err(words) => {
                let Err(SendError::Refused(why)) = &got else { panic!("{url} {vars:?}: {got:?} should be refused") };
                assert!(words.iter().all(|w| why.contains(w)), "{url} {vars:?}: {why}");
                assert!(!why.contains("secret"), "a proxy's password leaked into: {why}");
                assert_eq!(collector.check_transport(), got.map(drop), "`run` must refuse it at start too");
            }
        }
    }

    #[test]
    fn proxies_meet_the_plain_http_rule() {
        let http = "http://127.0.0.1:8088";
        let https = "https://hearth.example.com";
        let public = "http://user:secret@8.8.8.8:3128";
        check_proxy(http, false, &[], Ok(None));
        check_proxy(http, false, &[("http_proxy", "http://10.0.0.1:3128")], Ok(Some("http://10.0.0.1:3128")));
        check_proxy(http, false, &[("http_proxy", "127.0.0.1")], Ok(Some("127.0.0.1")));
        check_proxy(http, false, &[("http_proxy", public)], Err(&["http_proxy", "8.8.8.8", "--allow-insecure-http"]));
        check_proxy(http, false, &[("all_proxy", public)], Err(&["all_proxy", "8.8.8.8"]));
        check_proxy(http, false, &[("ALL_PROXY", public)], Err(&["ALL_PROXY", "8.8.8.8"]));
        check_proxy(
            http,
            false,
            &[("http_proxy", "http://10.0.0.1:3128"), ("all_proxy", public)],
            Ok(Some("http://10.0.0.1:3128")),
        );
        check_proxy(http, true, &[("http_proxy", public)], Ok(Some(public)));
        check_proxy(http, false, &[("https_proxy", public), ("HTTPS_PROXY", public)], Ok(None));
        check_proxy(http, false, &[("http_proxy", "")], Ok(None));
        // Through https a proxy relays TLS only; the upper-case names count as well.
        check_proxy(https, false, &[("https_proxy", public)], Ok(Some(public)));
        check_proxy(https, false, &[("HTTPS_PROXY", public)], Ok(Some(public)));
        check_proxy(https, false, &[("ALL_PROXY", public)], Ok(Some(public)));
        check_proxy(https, false, &[("http_proxy", public)], Ok(None));
        check_proxy(https, false, &[("https_proxy", "socks5://secret@10.0.0.1")], Err(&["https_proxy", "not usable"]));
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
    fn proxy_addresses() {
        for (value, expected) in [
            ("http://user:pw@proxy:3128", ("proxy", 3128)),
            ("proxy", ("proxy", 8080)),
            ("10.0.0.1:81", ("10.0.0.1", 81)),
        ] {
            assert_eq!(proxy_address(value), (expected.0.to_owned(), expected.1), "{value}");
        }
    }

    /// A stand-in that echoes the request (a misconfigured proxy, say) does not get the
    /// agent token into the agent's errors, and so into the journal.
    #[test]
    fn an_answer_that_echoes_the_token_is_shown_without_it() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let echo = std::thread::spawn(move || {
            for (status, json) in [(502, false), (401, true)] {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = vec![0; 8192];
                let n = stream.read(&mut request).unwrap();
                let request = String::from_utf8_lossy(&request[..n]).into_owned();
                let auth = request.lines().find(|l| l.starts_with("Authorization")).unwrap_or("").to_owned();
                let request = format!("{auth}; {}", request.replace(['\r', '\n', '"'], " "));
                let body = if json {
                    format!(r#"{{"code":"bad {request}","error":"you sent {request}"}}"#)
                } else {
                    format!("bad gateway; the request was {request}")
                };
                let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                stream.write_all(answer.as_bytes()).unwrap();
            }
        });
        let collector = Collector::parse(&format!("http://127.0.0.1:{port}"), false).unwrap();
        let token = "hag_0123456789abcdef0123456789abcdef";
        for _ in 0..2 {
            let err = collector.post("/api/agent/heartbeat", "{}", Some(token), 5).unwrap_err().to_string();
            assert!(err.contains("[hidden]") && !err.contains("0123456789abcdef"), "{err}");
        }
        echo.join().unwrap();
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
