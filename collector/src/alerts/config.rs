//! The channels file: where alerts go.
//!
//! ```text
//! # /etc/hearth/alerts.conf
//! [channel phone]
//! type = ntfy
//! url = https://ntfy.sh/my-hearth-topic
//! tags = garage, cameras    # only nodes with one of these tags (optional)
//! reboot = true             # also reboots (optional)
//!
//! [channel am]
//! type = alertmanager
//! url = http://127.0.0.1:9093
//! watchdog = true           # keep an always-firing HearthWatchdog alert there (optional)
//! ```

use crate::model::EventKind;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Webhook,
    Ntfy,
    Discord,
    Slack,
    Gotify,
    Alertmanager,
}

impl Kind {
    fn parse(text: &str) -> Option<Kind> {
        Some(match text {
            "webhook" => Kind::Webhook,
            "ntfy" => Kind::Ntfy,
            "discord" => Kind::Discord,
            "slack" => Kind::Slack,
            "gotify" => Kind::Gotify,
            "alertmanager" => Kind::Alertmanager,
            _ => return None,
        })
    }
}

/// One destination. Its `Debug` shows the url's scheme and host only, and hides the token
/// and password: a webhook url's path is its key.
#[derive(Clone, PartialEq)]
pub struct Channel {
    pub name: String,
    pub kind: Kind,
    pub url: String,
    /// ntfy: a bearer token; gotify: the application token.
    pub token: Option<String>,
    /// `user:password` taken out of the url (`https://user:password@host/…`), sent as
    /// `Authorization: Basic`; the url keeps only scheme, host and path.
    pub basic_auth: Option<String>,
    /// Only nodes with at least one of these tags; empty means every node.
    pub tags: Vec<String>,
    /// Whether reboots are sent too.
    pub reboot: bool,
    /// Alertmanager only: keep an always-firing `HearthWatchdog` alert there while the
    /// collector is healthy, so that a dead collector is noticed outside it.
    pub watchdog: bool,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |secret: &Option<String>| secret.as_ref().map(|_| "…");
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &super::channel::origin(&self.url))
            .field("token", &hidden(&self.token))
            .field("basic_auth", &hidden(&self.basic_auth))
            .field("tags", &self.tags)
            .field("reboot", &self.reboot)
            .field("watchdog", &self.watchdog)
            .finish()
    }
}

impl Channel {
    /// Whether this channel wants an alert of `kind` about a node tagged `tags`.
    pub fn wants(&self, kind: EventKind, tags: &[String]) -> bool {
        let kind_ok = kind != EventKind::Reboot || self.reboot;
        kind_ok && (self.tags.is_empty() || self.tags.iter().any(|t| tags.contains(t)))
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Channels {
    pub list: Vec<Channel>,
}

impl Channels {
    pub fn get(&self, name: &str) -> Option<&Channel> {
        self.list.iter().find(|c| c.name == name)
    }
}

#[derive(Debug, PartialEq)]
pub struct ConfigError {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

pub fn parse(text: &str) -> Result<Channels, ConfigError> {
    let mut list: Vec<Channel> = Vec::new();
    // The line each channel starts on, and whether it said its type.
    let mut started: Vec<(usize, bool)> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let fail = |reason: String| ConfigError { line: line_no, reason };
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = header.trim().strip_prefix("channel").map(str::trim).filter(|n| !n.is_empty());
            let Some(name) = name else {
                let said = if plain(header.trim()) { format!("`[{}]`", header.trim()) } else { "this".to_owned() };
                return Err(fail(format!("{said} is not a section; write [channel NAME]")));
            };
            if list.iter().any(|c| c.name == name) {
                return Err(fail(format!("channel `{name}` is defined twice")));
            }
            list.push(Channel {
                name: name.into(),
                kind: Kind::Webhook,
                url: String::new(),
                token: None,
                basic_auth: None,
                tags: Vec::new(),
                reboot: false,
                watchdog: false,
            });
            started.push((line_no, false));
            continue;
        }
        // The line itself is never repeated: it may be a url or a token.
        let Some((key, value)) = line.split_once('=') else {
            return Err(fail("expected `key = value` (a url goes after `url =`)".into()));
        };
        let (key, value) = (key.trim(), unquoted(value.trim()));
        let Some(channel) = list.last_mut() else {
            let said = if plain(key) { format!("`{key}`") } else { "a setting".to_owned() };
            return Err(fail(format!("{said} comes before any [channel NAME] section")));
        };
        match key {
            "type" => {
                started.last_mut().expect("a channel has started").1 = true;
                channel.kind = Kind::parse(value).ok_or_else(|| {
                    fail(format!(
                        "unknown channel type{}; use webhook, ntfy, discord, slack, gotify or alertmanager",
                        said_back(value)
                    ))
                })?;
            }
            "url" => {
                let (url, basic_auth) = split_userinfo(value).map_err(fail)?;
                channel.url = url.trim_end_matches('/').into();
                channel.basic_auth = basic_auth;
            }
            "token" => channel.token = Some(value.into()),
            "tags" => channel.tags = value.split(',').map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect(),
            "reboot" | "watchdog" => {
                let on = match value {
                    "true" | "yes" => true,
                    "false" | "no" => false,
                    _ => return Err(fail(format!("{key} takes true or false, not{}", said_back(value)))),
                };
                if key == "reboot" {
                    channel.reboot = on;
                } else {
                    channel.watchdog = on;
                }
            }
            _ => {
                let named = if plain(key) { format!("unknown setting `{key}`") } else { "not a setting".to_owned() };
                return Err(fail(format!(
                    "{named}; a channel takes type, url, token, tags, reboot and watchdog, each as `key = value`"
                )));
            }
        }
    }
    for (channel, (line, typed)) in list.iter().zip(started) {
        let fail = |reason: String| Err(ConfigError { line, reason });
        if !typed {
            return fail(format!("channel `{}` has no type", channel.name));
        }
        if channel.url.is_empty() {
            return fail(format!("channel `{}` has no url", channel.name));
        }
        if channel.basic_auth.is_some() && channel.token.is_some() && channel.kind == Kind::Ntfy {
            return fail(format!(
                "ntfy channel `{}` has both a user:password in its url and a token; keep one",
                channel.name
            ));
        }
        if channel.watchdog && channel.kind != Kind::Alertmanager {
            return fail(format!(
                "channel `{}`: watchdog = true is for alertmanager channels (for others, see --watchdog-url)",
                channel.name
            ));
        }
        if channel.kind == Kind::Gotify && channel.token.is_none() {
            return fail(format!("gotify channel `{}` needs token = its application token", channel.name));
        }
    }
    Ok(Channels { list })
}

/// Splits `scheme://user:password@host/path` into the url without its user part, and
/// `user:password` (percent-decoded). Errors never repeat the url: it may hold a secret.
pub fn split_userinfo(value: &str) -> Result<(String, Option<String>), String> {
    let Some((scheme, rest)) = value.split_once("://").filter(|(s, _)| *s == "https" || *s == "http") else {
        return Err("the url must start with https:// or http://".into());
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    // As sent: no fragment (it never is), and a query after a `/` (`host?q` is `host/?q`).
    let path = &path[..path.find('#').unwrap_or(path.len())];
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_owned() };
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        if authority.is_empty() {
            return Err(format!("the url has no host after {scheme}://"));
        }
        // A password holding `/`, `?` or `#` unencoded ends the authority inside itself:
        // then the error must not say what it took for the host.
        check_host(scheme, authority, !value.contains('@') && plain_host(authority))?;
        return Ok((format!("{scheme}://{authority}{path}"), None));
    };
    if host.is_empty() {
        return Err(format!("the url has no host after {scheme}://…@"));
    }
    check_host(scheme, host, plain_host(host))?;
    let decoded = percent_decode(userinfo).ok_or_else(|| {
        format!("the user:password part of the url for {scheme}://{host} is not valid percent-encoded UTF-8")
    })?;
    Ok((format!("{scheme}://{host}{path}"), Some(decoded)))
}

/// Whether a value is a plain word (a name, `yes`), which an error may say back; anything
/// else (`url: https://…?a=b`, a webhook url under the wrong key) may hold a secret.
fn plain(value: &str) -> bool {
    value.len() <= 32 && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// ` `value`` for a plain word, to follow what was wrong with it; else nothing.
fn said_back(value: &str) -> String {
    if plain(value) {
        format!(" `{value}`")
    } else {
        " what was given".to_owned()
    }
}

/// `value` without one pair of quotes around it (`url = "https://…"`), as many files write.
fn unquoted(value: &str) -> &str {
    ['"', '\''].iter().find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q))).unwrap_or(value)
}

/// That `authority` (after any `user:password@`) is a host name or an IP address, with a
/// port from 1 to 65535 if any: a url that could never be reached is refused now, not
/// found out when an alert fails for a day.
fn check_host(scheme: &str, authority: &str, say_it: bool) -> Result<(), String> {
    let bad = |what: &str| {
        Err(match say_it {
            true => format!("the url {scheme}://{authority} has {what}"),
            false => format!(
                "the url has {what} after {scheme}:// (a path starts with `/`; in a user name or password, \
                 percent-encode `/`, `?`, `#` and `@`)"
            ),
        })
    };
    if authority.starts_with('[') {
        // minreq looks such a host up as a name, brackets and all, and never reaches it.
        return bad("an IPv6 address, which cannot be sent to: give a host name (an /etc/hosts line will do)");
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let name_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if host.is_empty() || !host.chars().all(name_ok) {
        return bad("no valid host name (letters, digits, `-` and `.`)");
    }
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    match port.map(|p| (digits(p), p.parse::<u16>())) {
        None | Some((true, Ok(1..))) => Ok(()),
        Some(_) => bad("no valid port (1 to 65535)"),
    }
}

/// Whether a host that is not valid may be said back: not when it holds what a path or
/// a password would (`https://discord.com\\api\\webhooks\\…`, `host/…` written with
/// backslashes), only a mistyped name or port.
fn plain_host(authority: &str) -> bool {
    authority.len() <= 64
        && authority.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | ' '))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn strip_comment(line: &str) -> &str {
    match line.find(" #").or_else(|| line.starts_with('#').then_some(0)) {
        Some(at) => &line[..at],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file() {
        let text = "# comment\n[channel phone]\ntype = ntfy\nurl = https://ntfy.sh/topic/  # trailing comment\n\
                    tags = garage, cameras\nreboot = true\n\n[channel am]\ntype = alertmanager\nurl = http://127.0.0.1:9093\n";
        let channels = parse(text).unwrap();
        assert_eq!(channels.list.len(), 2);
        let phone = channels.get("phone").unwrap();
        assert_eq!((phone.kind, phone.url.as_str(), phone.reboot), (Kind::Ntfy, "https://ntfy.sh/topic", true));
        assert!(phone.wants(EventKind::Reboot, &["garage".into()]));
        assert!(!phone.wants(EventKind::Offline, &["kitchen".into()]));
        let am = channels.get("am").unwrap();
        assert!(am.wants(EventKind::Offline, &[]) && !am.wants(EventKind::Reboot, &[]));
    }

    #[test]
    fn a_user_and_password_in_the_url_become_basic_auth_and_leave_the_url() {
        let text = "[channel am]\ntype = alertmanager\nurl = https://hearth:p%40ss:w@am.example.com:9093/\n";
        let am = parse(text).unwrap().list.remove(0);
        assert_eq!(am.url, "https://am.example.com:9093");
        assert_eq!(am.basic_auth.as_deref(), Some("hearth:p@ss:w"));
        let plain = parse("[channel s]\ntype = slack\nurl = https://hooks.slack.com/a@b\n").unwrap().list.remove(0);
        assert_eq!(
            (plain.url.as_str(), plain.basic_auth),
            ("https://hooks.slack.com/a@b", None),
            "an @ in the path is not a user"
        );
    }

    #[test]
    fn a_channel_printed_for_debugging_keeps_its_secrets() {
        let text = "[channel d]\ntype = ntfy\nurl = https://me:pw-s3cret@ntfy.lan/topic-s3cret\n\
                    [channel g]\ntype = gotify\nurl = https://g.lan\ntoken = tok-s3cret\n";
        let shown = format!("{:?}", parse(text).unwrap());
        assert!(!shown.contains("s3cret") && shown.contains("https://ntfy.lan"), "{shown}");
    }

    #[test]
    fn a_mistake_in_a_url_never_repeats_it() {
        let err = parse("[channel a]\ntype = slack\nhttps://hooks.slack.com/services/T0/B0/s3cret\n").unwrap_err();
        assert!(!err.reason.contains("s3cret") && err.line == 3, "{err}");
        // A password with an unencoded `/` cuts the authority inside it: nothing of it is said.
        let err = parse("[channel a]\ntype = slack\nurl = https://me:s3c/ret@x/hook\n").unwrap_err();
        assert!(!err.reason.contains("s3c") && !err.reason.contains("me:"), "{err}");
        let err = parse("[channel a]\ntype = slack\nurl = ftp://me:s3cret@x/hook\n").unwrap_err();
        assert!(!err.reason.contains("s3cret"), "{err}");
        let err = parse("[channel a]\ntype = slack\nurl = https://me:%zz@x/hook\n").unwrap_err();
        assert!(!err.reason.contains("%zz") && err.reason.contains("https://x"), "{err}");
        // Nor is a url under the wrong key, or written with backslashes, or before any section.
        for text in ["https://discord.com/api/webhooks/1/s3cret?wait=true\n", "[https://x/s3cret]\n"] {
            let err = parse(text).unwrap_err();
            assert!(!err.reason.contains("s3cret") && err.line == 1, "{text}: {err}");
        }
        for line in [
            "type = https://discord.com/api/webhooks/1/s3cret",
            "reboot = https://discord.com/api/webhooks/1/s3cret",
            "watchdog = s3cret-but-longer-than-a-word-ever-is",
            "url = https://discord.com\\api\\webhooks\\1\\s3cret",
        ] {
            let err = parse(&format!("[channel a]\ntype = discord\n{line}\n")).unwrap_err();
            assert!(!err.reason.contains("s3cret") && err.line == 3, "{line}: {err}");
        }
        // A mistyped name or word is still said back.
        let err = parse("[channel a]\ntype = slack\nurl = https://hooks slack.com/x\n").unwrap_err();
        assert!(err.reason.contains("https://hooks slack.com has no valid host name"), "{err}");
        let err = parse("[channel a]\ntype = slack\nreboot = maybe\n").unwrap_err();
        assert!(err.reason.contains("not `maybe`"), "{err}");
    }

    #[test]
    fn a_url_is_kept_as_it_is_sent() {
        for (given, kept) in [
            ("http://127.0.0.1:18801#frag", "http://127.0.0.1:18801"),
            ("http://127.0.0.1:18801?q=1", "http://127.0.0.1:18801/?q=1"),
            ("https://h.lan/hook?wait=true#x", "https://h.lan/hook?wait=true"),
            ("https://me:pw@h.lan?x=1", "https://h.lan/?x=1"),
        ] {
            let channels = parse(&format!("[channel a]\ntype = webhook\nurl = {given}\n")).unwrap();
            assert_eq!(channels.list[0].url, kept, "{given}");
        }
    }

    #[test]
    fn a_quoted_value_is_taken_without_its_quotes() {
        let channels = parse("[channel a]\ntype = \"slack\"\nurl = 'https://hooks.slack.com/x'\n").unwrap();
        assert_eq!(channels.list[0].url, "https://hooks.slack.com/x");
    }

    #[test]
    fn urls_that_can_be_reached_are_taken() {
        for url in [
            "http://localhost:8080/x",
            "https://me:pw@ntfy.lan:443/t",
            "https://xn--bcher-kva.example/x?a=b:c",
            "http://10.0.0.5:65535",
        ] {
            let text = format!("[channel a]\ntype = webhook\nurl = {url}\n");
            assert!(parse(&text).is_ok(), "{url}: {:?}", parse(&text).err());
        }
    }

    #[test]
    fn mistakes_name_their_line() {
        let cases = [
            ("url = https://x", 1, "before any [channel NAME]"),
            ("[channel a]\ntype = pager", 2, "unknown channel type `pager`"),
            ("[channel a]\ntype = slack\nurl = ftp://x", 3, "must start with https://"),
            ("[channel a]\ntype = slack\nurl = https://", 3, "has no host"),
            ("[channel a]\ntype = slack\nurl = https://me:s3cret@/x", 3, "has no host"),
            ("[channel a]\ntype = ntfy\nurl = https://me:s3cret@ntfy.lan/t\ntoken = tk", 1, "keep one"),
            ("[channel a]\ntype = slack", 1, "has no url"),
            ("[channel a]\ntype = gotify\nurl = https://g", 1, "needs token"),
            ("[channel a]\nurl = https://x\n[channel a]", 3, "defined twice"),
            ("[channel a]\nurl = https://x\ncolour = red", 3, "unknown setting `colour`"),
            ("[channel a]\nurl: https://x/s3cret?wait=true", 2, "not a setting"),
            ("[channel a]\ntype = slack\nurl = https://x:99999/h", 3, "no valid port"),
            ("[channel a]\ntype = slack\nurl = https://x:abc/h", 3, "no valid port"),
            ("[channel a]\ntype = slack\nurl = https://x:/h", 3, "no valid port"),
            ("[channel a]\ntype = slack\nurl = https://disc ord.com/h", 3, "no valid host name"),
            ("[channel a]\ntype = slack\nurl = https://[::1/x", 3, "an IPv6 address"),
            ("[channel a]\ntype = slack\nurl = https://[::1]:9093/h", 3, "give a host name"),
            ("[channel a]\ntype = slack\nurl = http://127.0.0.1:+80/x", 3, "no valid port"),
            ("[channel a]\ntype = slack\nurl = https://me:pw@h:0/x", 3, "no valid port"),
            ("[channel a]\ntype = slack\nurl = https://me:ab/cd@h/x", 3, "percent-encode"),
            ("[channel a]\nurl = https://x", 1, "has no type"),
            ("[channel a]\njust words", 2, "expected `key = value`"),
            ("[settings]", 1, "write [channel NAME]"),
            ("[channel a]\ntype = slack\nurl = https://x\nreboot = maybe", 4, "true or false"),
        ];
        for (text, line, reason) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.reason.contains(reason), "{text:?}: {err}");
        }
    }
}
