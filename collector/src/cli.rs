//! Command-line parsing: flags, then environment, then defaults.

use crate::model::Role;
use lexopt::prelude::*;
use std::path::PathBuf;
use std::time::Duration;

pub const HELP: &str = "\
hearth-collector: knows which of your nodes are alive, and since when

Usage:
  hearth-collector serve [--listen ADDR] [--data-dir DIR] [--allow-anonymous [--anonymous-per-minute N]]
                         [--alerts FILE] [--grace-secs N] [--min-down-secs N] [--remind-hours N]
                         [--pending-alert-secs N] [--mints-per-hour N]
                         [--max-db-mb N] [--max-batch N] [--io-timeout SECS] [--idle-exit SECS]
                         [--trust-proxy cloudflare] [--agent-dir DIR] [--public-url URL]
                         [--watchdog-url URL [--watchdog-secs N]]
                         [--cert-pin SHA256]
  hearth-collector user add NAME --role viewer|operator|admin
  hearth-collector user passwd NAME | user remove NAME | user list
  hearth-collector token create [--ttl 1h] [--name N] [--tags a,b] [--node ID]
  hearth-collector apikey create --user NAME [--name N]
  hearth-collector fleetkey create --name N [--tags a,b] [--max-uses N] [--ttl 30d]
  hearth-collector fleetkey list | fleetkey revoke ID
  hearth-collector nodes [--json] [--grace-secs N] [--min-down-secs N]
  hearth-collector node set NODE_ID --grace-secs N
  hearth-collector alert test [--channel NAME] [--alerts FILE]
  hearth-collector job add NAME (--period 1d | --schedule \"0 3 * * *\" [--tz Europe/Berlin])
                           [--grace 1h] [--tags a,b] [--public-url URL]
  hearth-collector job list [--json] | job pause JOB [--alerts FILE] | job resume JOB
  hearth-collector job remove JOB [--alerts FILE]
  hearth-collector ping-key rotate [--public-url URL]
  hearth-collector maintenance add --reason TEXT (--start TIME --end TIME | --schedule CRON --duration 2h
                                   [--tz ZONE]) [--nodes ID,ID | --tags a,b]
  hearth-collector maintenance list [--json] | maintenance remove ID
  hearth-collector silence add (--node ID | --tag TAG) --duration 2h --reason TEXT
  hearth-collector silence list [--json] | silence remove ID
  hearth-collector node ack NODE_ID
  hearth-collector statuspage create --slug SLUG --title TEXT --tags a,b [--show-hostnames]
  hearth-collector statuspage list | statuspage remove SLUG

Commands:
  serve          answer heartbeats, enrolments, the API and the dashboard
  user add       add a dashboard user; the password is read from stdin (or asked for)
  user passwd    set a user's new password (stdin, or asked for); their sessions end
  user remove    remove a user, with their sessions and API keys
  user list      print the users and their roles
  token create   mint a one-time enrolment token and print it, alone, on stdout
  apikey create  mint an API key that acts as the user, and print it, alone, on stdout
  fleetkey create
                 mint a fleet key (`usr_…`): one key that lets up to --max-uses nodes in,
                 each enrolling for its own token, or Beacon agents beating with the key
                 itself; printed, alone, on stdout, once
  fleetkey list  print the fleet keys (never the keys themselves) and how many nodes each let in
  fleetkey revoke
                 revoke a fleet key: enrolments and Beacon heartbeats with it get 401
  nodes          print the node table (--json: as the API returns it), judged with the
                 grace settings the last `serve` on this data directory used (flags override)
  node set       give one node its own grace (0 returns it to the default)
  alert test     send a test notification to each channel (or one) and print its answer;
                 the channels file is --alerts, else HEARTH_ALERTS, else the one the last
                 `serve` on --data-dir read, else /etc/hearth/alerts.conf
  job add        watch a scheduled job by its pings (Healthchecks-style); prints its ping
                 URL, alone, on stdout
  job list       print the jobs, their state and when each is next expected
  job pause      stop watching a job until its next ping (JOB is its id or slug); if it
                 was down or failed, the channels (as for `alert test`) hear that it was
                 paused, and Alertmanager's alert about it ends
  job resume     watch a paused job again; it has its grace from now
  job remove     forget a job and its pings; a job down or failed ends as with pause
  ping-key rotate
                 make a new ping key for slug URLs (/ping/KEY/SLUG) and print it once;
                 the old one stops working
  maintenance add
                 hold offline and check alerts for every node, some node ids or some tags
                 during a window: one-off (--start, --end) or recurring (--cron, --duration,
                 --time-zone); prints the window's id
  maintenance list | remove
                 print the windows, or remove one
  silence add    hold alerts about a node or a tag for --duration; prints the silence's id
  silence list | remove
                 print the silences in force, or remove one
  node ack       acknowledge an offline node: no reminders until it recovers
  statuspage create
                 publish /status/SLUG (and SLUG.json), no login: the nodes with one of
                 --tags, each with its name, status and 90 days of availability
  statuspage list | remove
                 print the status pages, or remove one

Options:
  --listen ADDR      address to listen on [env HEARTH_LISTEN; default 127.0.0.1:8088], or
                     unix:/PATH for a Unix socket; port 0 picks a free port, and the
                     line `listening on http://ADDR` on stdout says which. A socket passed
                     by systemd (socket activation) takes precedence
  --data-dir DIR     where the LMDB store lives [env HEARTH_DATA_DIR;
                     default /var/lib/hearth-collector]
  --allow-anonymous  also accept heartbeats without a token, registering unknown nodes
                     on their first heartbeat (V1 behaviour; trusted networks only); at
                     most 10,000 nodes in all may register so
  --anonymous-per-minute N
                     with --allow-anonymous, how many new nodes one address may register
                     a minute [default 10]
  --mints-per-hour N how many enrolment tokens one user may mint an hour [default 600];
                     past it, 429 (enrol fleets with a fleet key instead)
  --alerts FILE      the alert channels file [env HEARTH_ALERTS; default
                     /etc/hearth/alerts.conf, if it exists]; see README
  --grace-secs N     silence allowed before a node is late→offline [default 3 × its interval];
                     never less than 2 × a node's interval: a shorter one is raised to
                     that for the node (a warning at start says so), or it would flap
  --min-down-secs N  how long past grace before the offline alert [default one interval]
  --remind-hours N   remind every N hours while a node stays down [default 6; 0 = never]
  --pending-alert-secs N
                     alert once about a node enrolled N seconds ago that has never sent
                     a heartbeat [default: never]
  --max-db-mb N      the store never grows past N MiB; past it, writes get 507
  --max-batch N      the most requests one commit carries [default 256; 1 = no group commit]
  --io-timeout SECS  how long a client may take to send its request or read the answer
                     [default 10]
  --trust-proxy cloudflare
                     take the client's address from CF-Connecting-IP (cloudflared in
                     front); without it, that header is ignored
  --agent-dir DIR    serve agent binaries from DIR/linux/<uname -m>/hearth-agent (the
                     `agent` directory `cargo xtask dist` writes) [env HEARTH_AGENT_DIR]
  --public-url URL   this collector's address as nodes reach it, for install commands
                     [env HEARTH_PUBLIC_URL; default: the address the browser used]
  --watchdog-url URL while the collector is healthy (its request loop turns, its store
                     takes writes), GET this URL every --watchdog-secs: a Healthchecks or
                     Uptime Kuma push URL, or another Hearth's job; a user:password@
                     in it is sent as Basic credentials [env HEARTH_WATCHDOG_URL]
  --watchdog-secs N  how often [default 60]; an alertmanager channel with
                     `watchdog = true` gets its HearthWatchdog alert as often
  --cert-pin SHA256  the certificate fingerprint enrolment answers tell agents to pin
                     (`cert_pin_sha256`) [env HEARTH_CERT_PIN; default: none, null]
  --idle-exit SECS   exit after SECS without a request, when no node is watched and no
                     alert waits; with socket activation, the next request starts it again

Options of the other commands:
  --data-dir DIR     as for serve: the store they read and change
  --role ROLE        user add: viewer (reads), operator (also enrols and edits nodes) or
                     admin (also deletes nodes and reads the audit log)
  --user NAME        apikey create: the user the key acts as, with their role
  --name N           token create: the name the node gets; apikey create: a label;
                     fleetkey create: the key's name (required)
  --tags a,b         token create: tags the node gets (an agent may add its own, never
                     drop these)
  --ttl DURATION     token create: how long it stays valid: 90s, 15m, 1h, 2d [default 1h];
                     fleetkey create: how long it lets new nodes in (those in stay) [default
                     30d, at most 365d]
  --max-uses N       fleetkey create: how many nodes it may let in [default 1000, at most 10000]
  --node ID          token create: bind the token to an existing node, to enrol it again
  --json             nodes: print the nodes as the API returns them
  --grace-secs N     nodes: judge with this grace instead of serve's; node set: this
                     node's own grace (0 = the default)
  --min-down-secs N  nodes: judge with this instead of serve's
  --channel NAME     alert test: only this channel
  --period DURATION  job add: the job runs every DURATION: 90s, 15m, 1h, 2d
  --schedule CRON    job add: the job runs at the times a 5-field cron expression names;
                     maintenance add: a recurring window starts then (also spelled --cron)
  --tz ZONE          job add, maintenance add: the IANA time zone the schedule is read in
                     [default UTC] (also spelled --time-zone)
  --grace DURATION   job add: how late a run may be, or how long a started run may take,
                     before the job is down [default 1h]
  --tags a,b         job add: tags for channel filters
  --public-url URL   job add, ping-key rotate: the base of the printed URL [env
                     HEARTH_PUBLIC_URL; default: the one `serve` on the data directory
                     runs with (its --public-url, else its TCP address), else
                     http://127.0.0.1:8088]
  --json             job list: print the jobs as the API returns them
  --reason TEXT      maintenance add, silence add: why (shown in events and the audit log)
  --start TIME, --end TIME
                     maintenance add: a one-off window, in RFC 3339 (2026-12-01T02:00:00Z)
  --cron CRON        the same as --schedule: 5 cron fields (minute hour day-of-month month
                     day-of-week), such as `0 2 * * 0`
  --duration D       maintenance add: how long each occurrence lasts; silence add: how long
                     the silence lasts (90s, 15m, 1h, 2d)
  --time-zone ZONE   the same as --tz
  --nodes ID,ID      maintenance add: only these nodes
  --tags a,b         maintenance add: only nodes with one of these tags
  --node ID          silence add: the node to silence
  --tag TAG          silence add: silence every node with this tag
  --slug SLUG        statuspage create: where the page is served, /status/SLUG
  --title TEXT       statuspage create: the page's heading
  --show-hostnames   statuspage create: also show each node's hostname
  -h, --help         print this help
  -V, --version      print the version

Administration commands are safe to run while `serve` runs on the same data directory.

Exit status: 0 success, 1 failure (the message says what failed), 2 bad usage or
configuration (a flag the command does not take, an unreadable or wrong channels file).
";

#[derive(Debug)]
pub enum Command {
    Serve(Serve),
    TokenCreate {
        data_dir: PathBuf,
        ttl: Duration,
        name: Option<String>,
        tags: Vec<String>,
        node: Option<String>,
    },
    ApiKeyCreate {
        data_dir: PathBuf,
        name: Option<String>,
        user: String,
    },
    FleetKeyCreate {
        data_dir: PathBuf,
        key: crate::commands::NewKey,
    },
    FleetKeyList {
        data_dir: PathBuf,
    },
    FleetKeyRevoke {
        data_dir: PathBuf,
        id: String,
    },
    UserAdd {
        data_dir: PathBuf,
        name: String,
        role: Role,
    },
    UserPasswd {
        data_dir: PathBuf,
        name: String,
    },
    UserRemove {
        data_dir: PathBuf,
        name: String,
    },
    UserList {
        data_dir: PathBuf,
    },
    /// The grace flags override what the last `serve` used.
    Nodes {
        data_dir: PathBuf,
        json: bool,
        grace_secs: Option<u64>,
        min_down_secs: Option<u64>,
    },
    AlertTest {
        data_dir: PathBuf,
        alerts: Option<PathBuf>,
        channel: Option<String>,
    },
    NodeSet {
        data_dir: PathBuf,
        node_id: String,
        grace_secs: Option<u64>,
    },
    JobAdd {
        data_dir: PathBuf,
        name: String,
        period_secs: Option<u64>,
        cron: Option<String>,
        tz: Option<String>,
        grace_secs: u64,
        tags: Vec<String>,
        /// `None`: the one the last `serve` stored.
        public_url: Option<String>,
    },
    JobList {
        data_dir: PathBuf,
        json: bool,
    },
    /// Pause (`true`) or resume a job, by id or slug.
    JobPause {
        data_dir: PathBuf,
        job: String,
        paused: bool,
        alerts: Option<PathBuf>,
    },
    JobRemove {
        data_dir: PathBuf,
        job: String,
        alerts: Option<PathBuf>,
    },
    PingKeyRotate {
        data_dir: PathBuf,
        /// `None`: the one the last `serve` stored.
        public_url: Option<String>,
    },
    MaintenanceAdd {
        data_dir: PathBuf,
        reason: String,
        start: Option<String>,
        end: Option<String>,
        cron: Option<String>,
        duration: Option<Duration>,
        time_zone: Option<String>,
        nodes: Vec<String>,
        tags: Vec<String>,
    },
    MaintenanceList {
        data_dir: PathBuf,
        json: bool,
    },
    MaintenanceRemove {
        data_dir: PathBuf,
        id: String,
    },
    SilenceAdd {
        data_dir: PathBuf,
        node: Option<String>,
        tag: Option<String>,
        duration: Duration,
        reason: String,
    },
    SilenceList {
        data_dir: PathBuf,
        json: bool,
    },
    SilenceRemove {
        data_dir: PathBuf,
        id: String,
    },
    NodeAck {
        data_dir: PathBuf,
        node_id: String,
    },
    StatusPageCreate {
        data_dir: PathBuf,
        slug: String,
        title: String,
        tags: Vec<String>,
        show_hostnames: bool,
    },
    StatusPageList {
        data_dir: PathBuf,
    },
    StatusPageRemove {
        data_dir: PathBuf,
        slug: String,
    },
    Help,
    Version,
}

#[derive(Debug)]
pub struct Serve {
    pub listen: String,
    pub data_dir: PathBuf,
    pub allow_anonymous: bool,
    /// New nodes one address may register by anonymous heartbeat, a minute.
    pub anonymous_per_minute: u32,
    /// Enrolment tokens one user may mint an hour.
    pub mints_per_hour: u32,
    pub max_db_mb: Option<usize>,
    pub max_batch: usize,
    pub io_timeout: Duration,
    /// The channels file named on the command line or in HEARTH_ALERTS.
    pub alerts: Option<PathBuf>,
    pub grace_secs: Option<u64>,
    pub min_down_secs: Option<u64>,
    /// `None` turns reminders off.
    pub remind_hours: Option<u64>,
    pub pending_alert_secs: Option<u64>,
    pub idle_exit: Option<Duration>,
    pub trust_cloudflare: bool,
    pub agent_dir: Option<PathBuf>,
    pub public_url: Option<String>,
    /// Pinged while the collector is healthy (`--watchdog-url`).
    pub watchdog_url: Option<String>,
    pub watchdog_secs: u64,
    /// SHA-256 (hex) of the certificate agents should pin, told in enrolment answers.
    pub cert_pin: Option<String>,
}

/// A usage error, already worded for the person at the terminal.
#[derive(Debug)]
pub struct UsageError(pub String);

impl From<lexopt::Error> for UsageError {
    fn from(e: lexopt::Error) -> UsageError {
        UsageError(e.to_string())
    }
}

pub fn parse(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Command, UsageError> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut words: Vec<String> = Vec::new();
    let mut listen = std::env::var("HEARTH_LISTEN").unwrap_or_else(|_| "127.0.0.1:8088".into());
    let mut data_dir: PathBuf =
        std::env::var_os("HEARTH_DATA_DIR").map_or_else(|| "/var/lib/hearth-collector".into(), Into::into);
    let (mut allow_anonymous, mut json, mut anonymous_per_minute, mut mints_per_hour) = (false, false, 10, 600);
    let (mut max_db_mb, mut max_batch, mut io_timeout) = (None, 256, Duration::from_secs(10));
    let (mut ttl, mut name, mut tags, mut node) = (Duration::from_secs(3600), None, Vec::new(), None);
    let mut alerts: Option<PathBuf> = std::env::var_os("HEARTH_ALERTS").map(Into::into);
    let (mut grace_secs, mut min_down_secs, mut remind_hours, mut channel) = (None, None, Some(6), None);
    let (mut idle_exit, mut trust_cloudflare, mut pending_alert_secs) = (None, false, None);
    let mut agent_dir: Option<PathBuf> = std::env::var_os("HEARTH_AGENT_DIR").map(Into::into);
    let mut public_url = std::env::var("HEARTH_PUBLIC_URL").ok();
    let mut watchdog_url = std::env::var("HEARTH_WATCHDOG_URL").ok();
    let mut watchdog_secs = 60;
    let mut cert_pin = std::env::var("HEARTH_CERT_PIN").ok();
    let (mut role, mut user, mut max_uses, mut ttl_given) = (None, None, None, false);
    let (mut period, mut schedule, mut tz, mut grace) = (None, None, None, None);
    let (mut reason, mut start, mut end, mut cron) = (None, None, None, None);
    let (mut duration, mut time_zone, mut nodes, mut tag) = (None, None, Vec::new(), None);
    let (mut slug, mut title, mut show_hostnames) = (None, None, false);
    let mut given: Vec<String> = Vec::new();
    while let Some(arg) = parser.next()? {
        if let Long(flag) = &arg {
            given.push((*flag).to_owned());
        }
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Long("listen") => listen = parser.value()?.string()?,
            Long("data-dir") => data_dir = parser.value()?.into(),
            Long("allow-anonymous") => allow_anonymous = true,
            Long("anonymous-per-minute") => {
                anonymous_per_minute = u32::try_from(whole(&mut parser, "--anonymous-per-minute")?)
                    .map_err(|_| UsageError("--anonymous-per-minute is too large".into()))?;
            }
            Long("mints-per-hour") => {
                mints_per_hour = u32::try_from(number(&mut parser, "--mints-per-hour")?)
                    .map_err(|_| UsageError("--mints-per-hour is too large".into()))?;
            }
            Long("json") => json = true,
            Long("max-db-mb") => max_db_mb = Some(number(&mut parser, "--max-db-mb")?),
            Long("max-batch") => max_batch = number(&mut parser, "--max-batch")?,
            Long("trust-proxy") => match parser.value()?.string()?.as_str() {
                "cloudflare" => trust_cloudflare = true,
                other => return Err(UsageError(format!("--trust-proxy knows only `cloudflare`, not `{other}`"))),
            },
            Long("idle-exit") => idle_exit = Some(Duration::from_secs(number(&mut parser, "--idle-exit")? as u64)),
            Long("io-timeout") => io_timeout = Duration::from_secs(number(&mut parser, "--io-timeout")? as u64),
            Long("ttl") => {
                ttl = parse_duration(&parser.value()?.string()?)?;
                ttl_given = true;
            }
            Long("max-uses") => max_uses = Some(number(&mut parser, "--max-uses")? as u64),
            Long("name") => name = Some(parser.value()?.string()?),
            Long("tags") => tags = parser.value()?.string()?.split(',').map(|t| t.trim().to_owned()).collect(),
            Long("node") => node = Some(crate::model::node_key(&parser.value()?.string()?)),
            Long("alerts") => alerts = Some(parser.value()?.into()),
            Long("agent-dir") => agent_dir = Some(parser.value()?.into()),
            Long("public-url") => public_url = Some(parser.value()?.string()?),
            Long("watchdog-url") => watchdog_url = Some(parser.value()?.string()?),
            Long("watchdog-secs") => watchdog_secs = number(&mut parser, "--watchdog-secs")? as u64,
            Long("cert-pin") => cert_pin = Some(parser.value()?.string()?),
            Long("user") => user = Some(parser.value()?.string()?),
            Long("role") => {
                let text = parser.value()?.string()?;
                let parsed = Role::parse(&text)
                    .ok_or_else(|| UsageError(format!("--role is viewer, operator or admin, not `{text}`")))?;
                role = Some(parsed);
            }
            Long("channel") => channel = Some(parser.value()?.string()?),
            Long("period") => period = Some(parse_duration(&parser.value()?.string()?)?.as_secs()),
            Long("schedule") => schedule = Some(parser.value()?.string()?),
            Long("tz") => tz = Some(parser.value()?.string()?),
            Long("grace") => grace = Some(parse_duration(&parser.value()?.string()?)?.as_secs()),
            Long("reason") => reason = Some(parser.value()?.string()?),
            Long("start") => start = Some(parser.value()?.string()?),
            Long("end") => end = Some(parser.value()?.string()?),
            Long("cron") => cron = Some(parser.value()?.string()?),
            Long("duration") => duration = Some(parse_duration(&parser.value()?.string()?)?),
            Long("time-zone") => time_zone = Some(parser.value()?.string()?),
            Long("nodes") => {
                nodes = parser.value()?.string()?.split(',').map(crate::model::node_key).collect();
                nodes.retain(|n: &String| !n.is_empty());
            }
            Long("tag") => tag = Some(parser.value()?.string()?),
            Long("slug") => slug = Some(parser.value()?.string()?),
            Long("title") => title = Some(parser.value()?.string()?),
            Long("show-hostnames") => show_hostnames = true,
            Long("grace-secs") => grace_secs = Some(whole(&mut parser, "--grace-secs")?),
            Long("min-down-secs") => min_down_secs = Some(whole(&mut parser, "--min-down-secs")?),
            Long("pending-alert-secs") => {
                pending_alert_secs = Some(number(&mut parser, "--pending-alert-secs")? as u64)
            }
            Long("remind-hours") => remind_hours = Some(whole(&mut parser, "--remind-hours")?).filter(|h| *h > 0),
            Value(word) => words.push(word.string()?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    tags.retain(|t: &String| !t.is_empty());
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    if let Some(takes) = flags_of(&words) {
        if let Some(stray) = given.iter().find(|flag| !takes.contains(&flag.as_str())) {
            let command = words.iter().take(2).copied().collect::<Vec<_>>().join(" ");
            let takes = takes.iter().map(|f| format!("--{f}")).collect::<Vec<_>>().join(", ");
            return Err(UsageError(format!("`{command}` does not take --{stray}; it takes {takes} (see --help)")));
        }
    }
    Ok(match words.as_slice() {
        ["serve"] => Command::Serve(Serve {
            grace_secs: grace_secs.filter(|g| *g > 0),
            listen,
            data_dir,
            allow_anonymous,
            anonymous_per_minute,
            mints_per_hour,
            max_db_mb,
            max_batch,
            io_timeout,
            alerts,
            min_down_secs,
            remind_hours,
            pending_alert_secs,
            idle_exit,
            trust_cloudflare,
            agent_dir,
            public_url: base_url(public_url)?,
            watchdog_url: match watchdog_url.filter(|u| !u.is_empty()) {
                Some(url) => match crate::alerts::config::split_userinfo(&url) {
                    Ok(_) => Some(url),
                    // The reason never repeats the url's secrets (its path, its password).
                    Err(reason) => return Err(UsageError(format!("--watchdog-url: {reason}"))),
                },
                None => None,
            },
            watchdog_secs,
            cert_pin: cert_pin.map(|p| p.trim().to_ascii_lowercase()).filter(|p| !p.is_empty()),
        }),
        ["token", "create"] => Command::TokenCreate { data_dir, ttl, name, tags, node },
        ["apikey", "create"] => {
            let user = user.ok_or_else(|| {
                UsageError(
                    "apikey create needs --user NAME: the key acts as that user, with their role \
                     (add one with `hearth-collector user add NAME --role viewer`)"
                        .into(),
                )
            })?;
            Command::ApiKeyCreate { data_dir, name, user }
        }
        ["fleetkey", "create"] => {
            let name = name.ok_or_else(|| {
                UsageError("fleetkey create needs --name N: say what the key is for, such as --name pi-fleet".into())
            })?;
            let ttl = if ttl_given { ttl } else { Duration::from_secs(crate::api::DEFAULT_TTL_SECS) };
            let max_uses = max_uses.unwrap_or(crate::api::DEFAULT_MAX_USES);
            Command::FleetKeyCreate { data_dir, key: crate::commands::NewKey { name, tags, max_uses, ttl } }
        }
        ["fleetkey", "list"] => Command::FleetKeyList { data_dir },
        ["fleetkey", "revoke", id] => Command::FleetKeyRevoke { data_dir, id: (*id).to_owned() },
        ["user", "add", name] => {
            let role = role.ok_or_else(|| UsageError("user add needs --role viewer, operator or admin".into()))?;
            Command::UserAdd { data_dir, name: user_name(name)?, role }
        }
        ["user", "passwd", name] => Command::UserPasswd { data_dir, name: user_name(name)? },
        ["user", "remove", name] => Command::UserRemove { data_dir, name: user_name(name)? },
        ["user", "list"] => Command::UserList { data_dir },
        ["nodes"] => Command::Nodes { data_dir, json, grace_secs: grace_secs.filter(|g| *g > 0), min_down_secs },
        ["alert", "test"] => Command::AlertTest { data_dir, alerts, channel },
        ["node", "set", id] => {
            let grace_secs = grace_secs.ok_or_else(|| UsageError("node set needs --grace-secs N".into()))?;
            if grace_secs != 0 && !(5..=7 * 86_400).contains(&grace_secs) {
                return Err(UsageError(format!(
                    "--grace-secs must be 0 (the default) or 5 to 604800 seconds, as the API takes it, not {grace_secs}"
                )));
            }
            Command::NodeSet {
                data_dir,
                node_id: crate::model::node_key(id),
                grace_secs: Some(grace_secs).filter(|g| *g > 0),
            }
        }
        ["job", "add", name] => {
            // One spelling for schedules everywhere: `--schedule`/`--tz`, with maintenance's
            // `--cron`/`--time-zone` taken too.
            let (schedule, tz) = (schedule.or(cron), tz.or(time_zone));
            if period.is_none() && schedule.is_none() {
                return Err(UsageError("job add needs --period DURATION or --schedule \"CRON\" (see --help)".into()));
            }
            Command::JobAdd {
                data_dir,
                name: (*name).to_owned(),
                period_secs: period,
                cron: schedule,
                tz,
                grace_secs: grace.unwrap_or(3600),
                tags,
                public_url: base_url(public_url)?,
            }
        }
        ["job", "list"] => Command::JobList { data_dir, json },
        ["job", verb @ ("pause" | "resume"), job] => {
            Command::JobPause { data_dir, job: (*job).to_owned(), paused: *verb == "pause", alerts }
        }
        ["job", "remove", job] => Command::JobRemove { data_dir, job: (*job).to_owned(), alerts },
        ["ping-key", "rotate"] => Command::PingKeyRotate { data_dir, public_url: base_url(public_url)? },
        ["maintenance", "add"] => Command::MaintenanceAdd {
            data_dir,
            reason: reason.ok_or_else(|| UsageError("maintenance add needs --reason TEXT".into()))?,
            start,
            end,
            cron: cron.or(schedule),
            duration,
            time_zone: time_zone.or(tz),
            nodes,
            tags,
        },
        ["maintenance", "list"] => Command::MaintenanceList { data_dir, json },
        ["maintenance", "remove", id] => Command::MaintenanceRemove { data_dir, id: (*id).to_owned() },
        ["silence", "add"] => Command::SilenceAdd {
            data_dir,
            node,
            tag,
            duration: duration.ok_or_else(|| UsageError("silence add needs --duration, like 2h".into()))?,
            reason: reason.ok_or_else(|| UsageError("silence add needs --reason TEXT".into()))?,
        },
        ["silence", "list"] => Command::SilenceList { data_dir, json },
        ["silence", "remove", id] => Command::SilenceRemove { data_dir, id: (*id).to_owned() },
        ["node", "ack", id] => Command::NodeAck { data_dir, node_id: crate::model::node_key(id) },
        ["statuspage", "create"] => Command::StatusPageCreate {
            data_dir,
            slug: slug
                .ok_or_else(|| UsageError("statuspage create needs --slug SLUG (the page is /status/SLUG)".into()))?,
            title: title.ok_or_else(|| UsageError("statuspage create needs --title TEXT".into()))?,
            tags,
            show_hostnames,
        },
        ["statuspage", "list"] => Command::StatusPageList { data_dir },
        ["statuspage", "remove", slug] => Command::StatusPageRemove { data_dir, slug: (*slug).to_owned() },
        [] => return Err(UsageError("no command given; try `hearth-collector serve` or --help".into())),
        ["apikey", "create", user] => {
            return Err(UsageError(format!("apikey create takes the user as a flag: apikey create --user {user}")))
        }
        other => return Err(UsageError(format!("unknown command `{}`; see --help", other.join(" ")))),
    })
}

/// The flags each command takes (besides --help and --version); `None` for an unknown command.
fn flags_of(words: &[&str]) -> Option<&'static [&'static str]> {
    Some(match words {
        ["serve"] => &[
            "listen",
            "data-dir",
            "allow-anonymous",
            "anonymous-per-minute",
            "mints-per-hour",
            "alerts",
            "grace-secs",
            "min-down-secs",
            "remind-hours",
            "pending-alert-secs",
            "max-db-mb",
            "max-batch",
            "io-timeout",
            "idle-exit",
            "trust-proxy",
            "agent-dir",
            "public-url",
            "watchdog-url",
            "watchdog-secs",
            "cert-pin",
        ],
        ["token", "create"] => &["data-dir", "ttl", "name", "tags", "node"],
        ["apikey", "create"] => &["data-dir", "user", "name"],
        ["fleetkey", "create"] => &["data-dir", "name", "tags", "max-uses", "ttl"],
        ["fleetkey", "list"] | ["fleetkey", "revoke", _] => &["data-dir"],
        ["user", "add", _] => &["data-dir", "role"],
        ["user", "passwd" | "remove", _] | ["user", "list"] => &["data-dir"],
        ["nodes"] => &["data-dir", "json", "grace-secs", "min-down-secs"],
        ["node", "set", _] => &["data-dir", "grace-secs"],
        ["alert", "test"] => &["data-dir", "alerts", "channel"],
        ["job", "add", _] => {
            &["data-dir", "period", "schedule", "cron", "tz", "time-zone", "grace", "tags", "public-url"]
        }
        ["job", "list"] => &["data-dir", "json"],
        ["job", "pause" | "remove", _] => &["data-dir", "alerts"],
        ["job", "resume", _] => &["data-dir"],
        ["ping-key", "rotate"] => &["data-dir", "public-url"],
        ["maintenance", "add"] => {
            &["data-dir", "reason", "start", "end", "cron", "schedule", "duration", "time-zone", "tz", "nodes", "tags"]
        }
        ["maintenance" | "silence", "list"] => &["data-dir", "json"],
        ["maintenance" | "silence", "remove", _] | ["node", "ack", _] => &["data-dir"],
        ["silence", "add"] => &["data-dir", "node", "tag", "duration", "reason"],
        ["statuspage", "create"] => &["data-dir", "slug", "title", "tags", "show-hostnames"],
        ["statuspage", "list"] | ["statuspage", "remove", _] => &["data-dir"],
        _ => return None,
    })
}

/// The base of a printed ping URL: `--public-url`, else `HEARTH_PUBLIC_URL`; without
/// either, the command uses the one the last `serve` on the data directory stored.
fn base_url(public_url: Option<String>) -> Result<Option<String>, UsageError> {
    public_url.filter(|u| !u.is_empty()).map(|u| http_url("--public-url", u)).transpose()
}

/// `url` if it is an http(s) URL, without a trailing `/`.
fn http_url(flag: &str, url: String) -> Result<String, UsageError> {
    let scheme = |s: &str| url.get(..s.len()).is_some_and(|start| start.eq_ignore_ascii_case(s));
    if !scheme("https://") && !scheme("http://") {
        return Err(UsageError(format!(
            "{flag} must start with https:// or http:// (like https://hearth.example.com), not `{url}`"
        )));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// A user name: 1 to 64 letters, digits, `.`, `_`, `-` or `@`.
fn user_name(name: &str) -> Result<String, UsageError> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "._-@".contains(c);
    if (1..=64).contains(&name.len()) && name.chars().all(ok) {
        Ok(name.to_owned())
    } else {
        Err(UsageError(format!("`{name}` is not a user name: use 1 to 64 letters, digits, `.`, `_`, `-` or `@`")))
    }
}

fn number(parser: &mut lexopt::Parser, flag: &str) -> Result<usize, UsageError> {
    let text = parser.value()?.string()?;
    match text.parse() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(UsageError(format!("{flag} takes a whole number above 0, not `{text}`"))),
    }
}

fn whole(parser: &mut lexopt::Parser, flag: &str) -> Result<u64, UsageError> {
    let text = parser.value()?.string()?;
    text.parse().map_err(|_| UsageError(format!("{flag} takes a whole number, not `{text}`")))
}

/// Parses `90s`, `15m`, `1h`, `2d`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, UsageError> {
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match digits.parse::<u64>() {
        Ok(n) if n > 0 && scale > 0 => Ok(Duration::from_secs(n.saturating_mul(scale))),
        _ => Err(UsageError(format!("`{text}` is not a duration; write it like 90s, 15m, 1h or 2d"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<std::ffi::OsString> {
        line.split_whitespace().map(Into::into).collect()
    }

    #[test]
    fn schedules_are_spelled_the_same_for_jobs_and_maintenance() {
        let window =
            ["maintenance", "add", "--reason", "r", "--schedule", "0 2 * * 0", "--duration", "2h", "--tz", "UTC"];
        assert!(matches!(parse(window.map(Into::into)),
            Ok(Command::MaintenanceAdd { cron: Some(c), time_zone: Some(z), .. }) if c == "0 2 * * 0" && z == "UTC"));
        let job = ["job", "add", "backup", "--cron", "0 3 * * *", "--time-zone", "Europe/Berlin"];
        assert!(matches!(parse(job.map(Into::into)),
            Ok(Command::JobAdd { cron: Some(c), tz: Some(z), .. }) if c == "0 3 * * *" && z == "Europe/Berlin"));
    }

    #[test]
    fn a_flag_the_command_does_not_take_is_refused() {
        let err = parse(args("nodes --allow-anonymous")).unwrap_err().0;
        assert!(err.contains("`nodes` does not take --allow-anonymous") && err.contains("--json"), "{err}");
        let err = parse(args("user list --role admin")).unwrap_err().0;
        assert!(err.contains("`user list` does not take --role"), "{err}");
        assert!(parse(args("nodes --json --grace-secs 60")).is_ok());
        assert!(parse(args("serve --listen 127.0.0.1:0 --allow-anonymous --anonymous-per-minute 5")).is_ok());
    }

    #[test]
    fn the_help_names_every_flag() {
        let mut seen: Vec<&str> = Vec::new();
        for words in [
            &["serve"][..],
            &["token", "create"],
            &["apikey", "create"],
            &["fleetkey", "create"],
            &["user", "add", "x"],
            &["user", "list"],
            &["nodes"],
            &["node", "set", "x"],
            &["alert", "test"],
            &["job", "add", "x"],
            &["job", "list"],
            &["ping-key", "rotate"],
            &["maintenance", "add"],
            &["silence", "add"],
            &["silence", "list"],
            &["statuspage", "create"],
        ] {
            seen.extend(flags_of(words).unwrap().iter().copied());
        }
        for flag in seen {
            assert!(HELP.contains(&format!("--{flag}")), "--help leaves out --{flag}");
        }
    }

    #[test]
    fn durations() {
        for (text, secs) in [("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("2d", 172_800)] {
            assert_eq!(parse_duration(text).unwrap().as_secs(), secs, "{text}");
        }
        for bad in ["", "h", "1w", "-1h", "0", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commands() {
        let parse = |line: &str| parse(line.split_whitespace().map(Into::into));
        assert!(matches!(
            parse("serve --listen 127.0.0.1:0 --allow-anonymous"),
            Ok(Command::Serve(Serve { allow_anonymous: true, .. }))
        ));
        assert!(matches!(parse("token create --ttl 2h --tags a,,b"),
            Ok(Command::TokenCreate { tags, .. }) if tags == ["a", "b"]));
        assert!(matches!(parse("nodes --json"), Ok(Command::Nodes { json: true, .. })));
        assert!(matches!(parse("user add ann --role operator"),
            Ok(Command::UserAdd { name, role: Role::Operator, .. }) if name == "ann"));
        assert!(matches!(parse("apikey create --user ann"), Ok(Command::ApiKeyCreate { user, .. }) if user == "ann"));
        assert!(matches!(parse("fleetkey create --name pis --max-uses 50 --ttl 30d --tags pi,lab"),
            Ok(Command::FleetKeyCreate { key, .. }) if key.max_uses == 50 && key.ttl.as_secs() == 2_592_000 && key.tags == ["pi", "lab"]));
        assert!(matches!(parse("fleetkey create --name pis"),
            Ok(Command::FleetKeyCreate { key, .. }) if key.max_uses == 1000 && key.ttl.as_secs() == 2_592_000));
        assert!(matches!(parse("fleetkey revoke abc"), Ok(Command::FleetKeyRevoke { id, .. }) if id == "abc"));
        let schedule = ["job", "add", "backup", "--schedule", "0 3 * * *", "--tz", "Europe/Berlin", "--grace", "2h"];
        assert!(matches!(super::parse(schedule.map(Into::into)),
            Ok(Command::JobAdd { cron: Some(c), tz: Some(_), grace_secs: 7200, period_secs: None, .. }) if c == "0 3 * * *"));
        assert!(matches!(
            parse("job add certs --period 1d"),
            Ok(Command::JobAdd { period_secs: Some(86_400), grace_secs: 3600, .. })
        ));
        assert!(matches!(parse("job pause backup"), Ok(Command::JobPause { paused: true, .. })));
        for bad in [
            "",
            "serve --bogus",
            "frobnicate",
            "token create --ttl soon",
            "serve --max-batch 0",
            "apikey create",
            "user add ann",
            "user add ann --role root",
            "user add a/b --role admin",
            "fleetkey create",
            "fleetkey create --name x --max-uses 0",
            "fleetkey list --name x",
            "job add backup",
            "job add backup --period soon",
            "job list --period 1d",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
