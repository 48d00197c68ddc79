//! The channels file: where alerts go.
//!
//! ```text
//! # /etc/hearth/alerts.conf
//! [channel phone]
//! type = ntfy
//! url = https://ntfy.sh/my-hearth-topic
//! tags = garage, cameras    # only nodes with one of these tags (optional)
//! reboot = true             # also reboots (optional)
//! ```

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

#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub name: String,
    pub kind: Kind,
    pub url: String,
    /// ntfy: a bearer token; gotify: the application token.
    pub token: Option<String>,
    /// Only nodes with at least one of these tags; empty means every node.
    pub tags: Vec<String>,
    /// Whether reboots are sent too.
    pub reboot: bool,
}

impl Channel {
    /// Whether this channel wants an alert of `kind` about a node tagged `tags`.
    pub fn wants(&self, kind: &str, tags: &[String]) -> bool {
        let kind_ok = kind != "reboot" || self.reboot;
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
                return Err(fail(format!("`[{header}]` is not a section; write [channel NAME]")));
            };
            if list.iter().any(|c| c.name == name) {
                return Err(fail(format!("channel `{name}` is defined twice")));
            }
            list.push(Channel {
                name: name.into(),
                kind: Kind::Webhook,
                url: String::new(),
                token: None,
                tags: Vec::new(),
                reboot: false,
            });
            started.push((line_no, false));
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(fail(format!("expected `key = value`, found `{line}`")));
        };
        let (key, value) = (key.trim(), value.trim());
        let Some(channel) = list.last_mut() else {
            return Err(fail(format!("`{key}` comes before any [channel NAME] section")));
        };
        match key {
            "type" => {
                started.last_mut().expect("a channel has started").1 = true;
                channel.kind = Kind::parse(value).ok_or_else(|| {
                    fail(format!(
                        "unknown channel type `{value}`; use webhook, ntfy, discord, slack, gotify or alertmanager"
                    ))
                })?;
            }
            "url" => {
                if !(value.starts_with("https://") || value.starts_with("http://")) {
                    return Err(fail(format!("the url `{value}` must start with https:// or http://")));
                }
                channel.url = value.trim_end_matches('/').into();
            }
            "token" => channel.token = Some(value.into()),
            "tags" => channel.tags = value.split(',').map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect(),
            "reboot" => {
                channel.reboot = match value {
                    "true" | "yes" => true,
                    "false" | "no" => false,
                    _ => return Err(fail(format!("reboot takes true or false, not `{value}`"))),
                }
            }
            _ => {
                return Err(fail(format!("unknown setting `{key}`; a channel takes type, url, token, tags and reboot")))
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
        if channel.kind == Kind::Gotify && channel.token.is_none() {
            return fail(format!("gotify channel `{}` needs token = its application token", channel.name));
        }
    }
    Ok(Channels { list })
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
        assert!(phone.wants("reboot", &["garage".into()]));
        assert!(!phone.wants("offline", &["kitchen".into()]));
        let am = channels.get("am").unwrap();
        assert!(am.wants("offline", &[]) && !am.wants("reboot", &[]));
    }

    #[test]
    fn mistakes_name_their_line() {
        let cases = [
            ("url = https://x", 1, "before any [channel NAME]"),
            ("[channel a]\ntype = pager", 2, "unknown channel type `pager`"),
            ("[channel a]\ntype = slack\nurl = ftp://x", 3, "must start with https://"),
            ("[channel a]\ntype = slack", 1, "has no url"),
            ("[channel a]\ntype = gotify\nurl = https://g", 1, "needs token"),
            ("[channel a]\nurl = https://x\n[channel a]", 3, "defined twice"),
            ("[channel a]\nurl = https://x\ncolour = red", 3, "unknown setting `colour`"),
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
