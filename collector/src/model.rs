//! What the collector stores about nodes and credentials, and the status rule.
//! Pure data and pure functions: no I/O here.

use hearth_wire::{format_rfc3339, Check, Heartbeat};
use miniserde::{Deserialize, Serialize};

/// A node id as the store keys it, from what a person or client typed: hyphenated lower
/// case, also from the bare hex of `/etc/machine-id`; anything else only lower-cased (it
/// then names no node, and is answered as such).
pub fn node_key(id: &str) -> String {
    hearth_wire::canonical_node_id(id.trim()).unwrap_or_else(|| id.to_ascii_lowercase())
}

/// The interval assumed for a node that has not announced its own.
pub const DEFAULT_INTERVAL_SECS: u64 = 30;

/// The interval a node whose agent announces none (Beacon's, V1's) is judged by
/// until the gap between two of its heartbeats shows its cadence: such agents may be set
/// to beat every few minutes, and this many seconds lets a first gap of up to 8 minutes
/// (grace of 3 intervals, and one of minimum down time) pass without an alarm.
pub const UNANNOUNCED_INTERVAL_SECS: u64 = 120;

/// Everything stored about one node. Times are Unix milliseconds by the collector's clock.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct NodeRecord {
    pub node_id: String,
    pub name: String,
    pub hostname: String,
    pub tags: Vec<String>,
    pub enrolled_at: i64,
    /// When the last heartbeat arrived; `None` until the first one.
    pub last_seen: Option<i64>,
    /// The agent's clock minus the collector's, at the last heartbeat, in seconds.
    pub clock_skew_secs: Option<i64>,
    /// SHA-256 (hex) of the node's agent token; `None` for a node that registered anonymously.
    pub token_hash: Option<String>,
    /// Facts the agent gave when it enrolled, until its first heartbeat brings fresher ones.
    pub enrolled_with: EnrolledFacts,
    pub heartbeat: Option<Heartbeat>,
    /// Grace for this node, overriding the global setting and 3 × its interval.
    pub grace_secs: Option<u64>,
    /// The interval an operator set for this node, overriding the one its heartbeats announce.
    pub interval_override: Option<u64>,
    /// For an agent that announces no interval: the cadence its heartbeats have been seen
    /// to keep, in seconds (`liveness::learn_cadence`); `None` until a gap between two is known.
    pub cadence_secs: Option<u64>,
    /// When an operator last renamed or retagged the node; from then on heartbeats do not change them.
    pub edited_at: Option<i64>,
    /// When the offline (or `pending`) alert went out; `None` while the node is up.
    pub down_since: Option<i64>,
    /// When the last reminder went out, while down.
    pub reminded_at: Option<i64>,
    /// When the sweep next looks at this node (its key in the deadline index).
    pub deadline: Option<i64>,
    /// Heartbeats that changed checks since `flip_window`, for the flap limit.
    pub flips: Option<u64>,
    /// When the flap limit's window began; while flapping, the last check change.
    pub flip_window: Option<i64>,
    /// Since when the node's checks are flapping (their alerts held back).
    pub flapping_since: Option<i64>,
    /// The id of the fleet key the node was enrolled or registered with, if one.
    pub fleet_key: Option<String>,
    /// What a Beacon agent reports under `metadata`, as a JSON object of strings (bounded
    /// by `hearth_wire::BeaconHeartbeat`); `None` for other agents.
    pub metadata: Option<String>,
    /// When its first heartbeat arrived: time before it is not held against the node's uptime.
    pub first_seen: Option<i64>,
    /// While declared offline: when its outage is taken to have begun (the heartbeat that
    /// did not come); `None` while the node is up.
    pub down_from: Option<i64>,
    /// When an operator acknowledged the node's alert: no reminders until it recovers.
    pub acked_at: Option<i64>,
    /// Since when alerts about this node are held by a maintenance window or a silence,
    /// while one was held: the sweep looks again when the hold ends (`alerts::release`).
    pub held_since: Option<i64>,
}

/// How a node proves who it is, as the node list shows it.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAuth {
    /// Its own agent token, from enrolment.
    #[serde(rename = "agent_token")]
    AgentToken,
    /// Only a fleet key shared with other nodes (a Beacon agent): the weakest credential
    /// that still names who let it in.
    #[serde(rename = "fleet_key")]
    FleetKey,
    /// Nothing: registered by an anonymous heartbeat (`--allow-anonymous`).
    #[serde(rename = "anonymous")]
    Anonymous,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct EnrolledFacts {
    pub os: Option<String>,
    pub arch: Option<String>,
    pub agent_version: Option<String>,
    pub cpu_cores: Option<u64>,
    pub memory_mb: Option<u64>,
    pub disk_gb: Option<u64>,
}

/// A one-time enrolment token, stored under the SHA-256 of its raw value.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct EnrollTokenRecord {
    /// A short public id for listing and revoking; not the token.
    pub id: String,
    pub name: Option<String>,
    pub tags: Vec<String>,
    /// If set, the token re-enrols this existing node rather than adding a new one.
    pub node_id: Option<String>,
    /// The host the token was minted for, as the operator wrote it; informational.
    pub hostname: Option<String>,
    /// Who minted it: a user name, or `cli` for `hearth-collector token create`.
    pub created_by: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub used_by: Option<String>,
}

/// A fleet key, stored under the SHA-256 of its raw value: one key that lets many nodes
/// in, each enrolling for its own agent token or, for Beacon agents, sending heartbeats
/// with the key itself.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct FleetKeyRecord {
    /// A short public id for listing and revoking; not the key.
    pub id: String,
    pub name: String,
    /// Tags every node it lets in gets.
    pub tags: Vec<String>,
    /// How many nodes it may let in; counted by `uses`.
    pub max_uses: u64,
    /// Nodes let in so far: enrolments, and Beacon devices heard from for the first time.
    pub uses: u64,
    /// Who minted it: a user name, or `cli`.
    pub created_by: String,
    pub created_at: i64,
    /// After this, no new node may use it; nodes already in keep working.
    pub expires_at: Option<i64>,
    /// Once set, the key is dead: enrolments and heartbeats with it get 401.
    pub revoked_at: Option<i64>,
}

/// Where a fleet key stands.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetKeyState {
    #[serde(rename = "valid")]
    Valid,
    /// Every use is taken: nodes already in keep working, no new one may join.
    #[serde(rename = "used_up")]
    UsedUp,
    /// Past its time: as `UsedUp`.
    #[serde(rename = "expired")]
    Expired,
    /// Dead for every node.
    #[serde(rename = "revoked")]
    Revoked,
}

impl FleetKeyRecord {
    pub fn state(&self, now_ms: i64) -> FleetKeyState {
        if self.revoked_at.is_some() {
            FleetKeyState::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now_ms) {
            FleetKeyState::Expired
        } else if self.uses >= self.max_uses {
            FleetKeyState::UsedUp
        } else {
            FleetKeyState::Valid
        }
    }
}

/// An API key, stored under the SHA-256 of its raw value. It acts as its user, with that
/// user's role; a key from before users existed (`user: None`) acts as an admin.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: Option<String>,
    pub user: Option<String>,
    pub created_at: i64,
}

/// What a user may do; each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads the fleet, its events and alerts.
    Viewer,
    /// Also mints enrolment tokens and edits nodes.
    Operator,
    /// Also deletes nodes and reads the audit log.
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// A person who logs in, stored under their name.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct UserRecord {
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// argon2id, in the PHC string format (algorithm, parameters, salt and hash).
    pub password: String,
    pub created_at: i64,
}

impl UserRecord {
    /// The user's role; an unknown one (a damaged record) grants the least.
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Viewer)
    }
}

/// A browser session, stored under the SHA-256 of its cookie.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct SessionRecord {
    pub user: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// One entry of the audit log: who did what, to what, when, and from where.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct AuditRecord {
    pub id: u64,
    pub at: i64,
    /// A user name, `apikey:ID` for a key without a user, `cli` for the command line,
    /// or, for a failed login, the name that was tried.
    pub actor: String,
    /// `login`, `login_failed`, `logout`, `token_minted`, `token_revoked`, `node_updated`,
    /// `node_deleted`, `user_added`, `user_removed`, `password_changed`, `apikey_created`,
    /// `job_added`, `job_updated`, `job_paused`, `job_resumed`, `job_removed`, `ping_key_rotated`.
    pub action: String,
    /// What it was done to: a node id, a token id, a user name, a job id.
    pub target: Option<String>,
    /// The client's address; `local` for the command line.
    pub client: String,
    pub detail: String,
}

/// What happened to a node: the kind of an event, and of an alert. Stored, and shown in
/// the API and the webhook body, as the snake_case names below.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    #[serde(rename = "offline")]
    Offline,
    #[serde(rename = "recovered")]
    Recovered,
    #[serde(rename = "stopped")]
    Stopped,
    #[serde(rename = "reboot")]
    Reboot,
    #[serde(rename = "check_failed")]
    CheckFailed,
    #[serde(rename = "check_recovered")]
    CheckRecovered,
    #[serde(rename = "services_failed")]
    ServicesFailed,
    #[serde(rename = "services_recovered")]
    ServicesRecovered,
    #[serde(rename = "clock_skew")]
    ClockSkew,
    #[serde(rename = "reminder")]
    Reminder,
    /// Enrolled, and not heard from within `--pending-alert-secs`.
    #[serde(rename = "pending")]
    Pending,
    /// Checks changed too often (`liveness::FLAP_LIMIT`); check alerts are held back.
    #[serde(rename = "flapping")]
    Flapping,
    /// Checks steady again after flapping.
    #[serde(rename = "flapping_stopped")]
    FlappingStopped,
    /// `hearth-collector alert test`; never stored.
    #[serde(rename = "test")]
    Test,
    /// An operator deleted a node that was offline, failing checks or flapping: whatever
    /// was told of it ends (`alerts::delete_node`).
    #[serde(rename = "deleted")]
    Deleted,
    /// A job (`jobs.rs`) did not ping within its grace after it was expected; also its reminders.
    #[serde(rename = "job_down")]
    JobDown,
    /// A job said it failed (`/fail`, or a non-zero exit status); also its reminders.
    #[serde(rename = "job_failed")]
    JobFailed,
    /// A job that was down or failed pinged success again.
    #[serde(rename = "job_recovered")]
    JobRecovered,
    /// An operator paused a job that was down or failed: what was told of it is over, and a
    /// problem after it is told afresh (`jobs::pause`).
    #[serde(rename = "job_paused")]
    JobPaused,
    /// An operator removed a job that was down or failed: what was told of it is over.
    #[serde(rename = "job_removed")]
    JobRemoved,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Offline => "offline",
            EventKind::Recovered => "recovered",
            EventKind::Stopped => "stopped",
            EventKind::Reboot => "reboot",
            EventKind::CheckFailed => "check_failed",
            EventKind::CheckRecovered => "check_recovered",
            EventKind::ServicesFailed => "services_failed",
            EventKind::ServicesRecovered => "services_recovered",
            EventKind::ClockSkew => "clock_skew",
            EventKind::Reminder => "reminder",
            EventKind::Pending => "pending",
            EventKind::Flapping => "flapping",
            EventKind::FlappingStopped => "flapping_stopped",
            EventKind::Test => "test",
            EventKind::Deleted => "deleted",
            EventKind::JobDown => "job_down",
            EventKind::JobFailed => "job_failed",
            EventKind::JobRecovered => "job_recovered",
            EventKind::JobPaused => "job_paused",
            EventKind::JobRemoved => "job_removed",
        }
    }

    /// Whether channels are told (reboot only where a channel asks for it).
    pub fn alerts(self) -> bool {
        match self {
            EventKind::Offline
            | EventKind::Recovered
            | EventKind::CheckFailed
            | EventKind::CheckRecovered
            | EventKind::Reboot
            | EventKind::Reminder
            | EventKind::Pending
            | EventKind::Flapping
            | EventKind::FlappingStopped
            | EventKind::Test
            | EventKind::Deleted
            | EventKind::JobDown
            | EventKind::JobFailed
            | EventKind::JobRecovered
            | EventKind::JobPaused
            | EventKind::JobRemoved => true,
            EventKind::Stopped | EventKind::ServicesFailed | EventKind::ServicesRecovered | EventKind::ClockSkew => {
                false
            }
        }
    }
}

/// A Wrenn host: a node created by `POST /v1/hosts` that registers with a one-time
/// token and then beats with a host JWT (`api/wrenn.rs`). Its liveness is its node's.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct HostRecord {
    pub state: HostState,
    /// What the host agent said at registration.
    pub address: Option<String>,
    pub arch: Option<String>,
    pub cpu_cores: Option<u64>,
    pub memory_mb: Option<u64>,
    pub disk_gb: Option<u64>,
    /// The user who created it.
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// SHA-256 (hex) of the registration token that may register it now, so that a new one
    /// replaces it.
    pub registration_hash: Option<String>,
}

/// Whether a Wrenn host has traded its registration token for a host JWT yet.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    /// Created, waiting for its agent to register.
    #[serde(rename = "pending")]
    Pending,
    /// Holds a host JWT.
    #[serde(rename = "registered")]
    Registered,
}

impl EventKind {
    /// Whether this is about a job (its subject id is a job id) rather than a node.
    pub fn is_job(self) -> bool {
        matches!(
            self,
            EventKind::JobDown
                | EventKind::JobFailed
                | EventKind::JobRecovered
                | EventKind::JobPaused
                | EventKind::JobRemoved
        )
    }
}

/// Why a node was not up for a while: a span in its uptime log (`uptime.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanCause {
    /// Declared offline: the only cause held against the node.
    Offline,
    /// Stopped cleanly, until it came back.
    Stopped,
    /// Offline inside a maintenance window.
    Maintenance,
}

impl SpanCause {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanCause::Offline => "offline",
            SpanCause::Stopped => "stopped",
            SpanCause::Maintenance => "maintenance",
        }
    }

    /// The byte it is stored as.
    pub fn code(self) -> u8 {
        match self {
            SpanCause::Offline => 1,
            SpanCause::Stopped => 2,
            SpanCause::Maintenance => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<SpanCause> {
        match code {
            1 => Some(SpanCause::Offline),
            2 => Some(SpanCause::Stopped),
            3 => Some(SpanCause::Maintenance),
            _ => None,
        }
    }
}

/// A stretch of time a node was not up, from `start` to `end` (Unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: i64,
    pub end: i64,
    pub cause: SpanCause,
}

/// Where one channel's delivery of one alert stands.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not yet accepted; the worker tries again at `next_attempt`.
    #[serde(rename = "pending")]
    Pending,
    #[serde(rename = "delivered")]
    Delivered,
    /// Given up on, after the last attempt.
    #[serde(rename = "failed")]
    Failed,
    /// Never sent: too many newer alerts about the same node were waiting (`alerts::PENDING_PER_NODE`).
    #[serde(rename = "dropped")]
    Dropped,
}

/// Something that happened to a node, kept for `GET /api/events`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub id: u64,
    pub node_id: String,
    pub at: i64,
    pub kind: EventKind,
    pub check: Option<String>,
    pub detail: String,
    /// Why its alert was held, if it was: `maintenance: REASON`, `silenced: REASON` or
    /// `acknowledged` (`maintenance.rs`).
    pub held: Option<String>,
}

/// A maintenance window: one-off (`start`, `end`) or recurring (`cron`, `duration_secs`,
/// `time_zone`), over every node (no `node_ids`, no `tags`), some node ids, or some tags.
/// `maintenance::Window::parse` makes sense of it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct MaintenanceRecord {
    pub id: String,
    pub reason: String,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub cron: Option<String>,
    pub duration_secs: Option<u64>,
    pub time_zone: Option<String>,
    pub node_ids: Vec<String>,
    pub tags: Vec<String>,
    pub created_by: String,
    pub created_at: i64,
}

/// A public status page (`/status/SLUG`): the nodes with one of its tags.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct StatusPageRecord {
    pub slug: String,
    pub title: String,
    pub tags: Vec<String>,
    /// Whether the page shows each node's hostname (it never shows ids, tags, facts or addresses).
    pub show_hostnames: bool,
    pub created_by: String,
    pub created_at: i64,
}

/// A silence: alerts about a node, or about every node with a tag, held until `until`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct SilenceRecord {
    pub id: String,
    pub node_id: Option<String>,
    pub tag: Option<String>,
    pub until: i64,
    pub reason: String,
    pub created_by: String,
    pub created_at: i64,
}

/// An alert and where it must go. It stays in the outbox until every channel has it or gave up.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AlertRecord {
    pub id: u64,
    pub kind: EventKind,
    pub node_id: String,
    pub name: String,
    pub hostname: String,
    pub tags: Vec<String>,
    pub check: Option<String>,
    /// The checks the alert is about, as they stood (several failing at once, say).
    pub checks: Option<Vec<Check>>,
    pub detail: String,
    pub at: i64,
    /// When the node was declared offline (for `recovered`, when it had been); what
    /// Alertmanager calls `startsAt`.
    pub down_since: Option<i64>,
    pub deliveries: Vec<Delivery>,
}

/// One channel's delivery of one alert.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Delivery {
    pub channel: String,
    pub state: DeliveryState,
    pub attempts: u64,
    pub next_attempt: i64,
    pub last_error: Option<String>,
    /// The HTTP status the channel answered the last failed attempt with; `None` when it
    /// could not be reached (or nothing failed yet).
    pub answered: Option<u16>,
    pub delivered_at: Option<i64>,
}

impl AlertRecord {
    pub fn is_settled(&self) -> bool {
        self.deliveries.iter().all(|d| d.state != DeliveryState::Pending)
    }
}

/// Where a node stands, by the collector's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Enrolled, never heard from.
    Pending,
    /// Heard from within 1.5 × its interval.
    Online,
    /// Silent for up to 3 × its interval.
    Late,
    /// Silent for longer.
    Offline,
    /// Its last heartbeat said it was shutting down cleanly.
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Online => "online",
            Status::Late => "late",
            Status::Offline => "offline",
            Status::Stopped => "stopped",
        }
    }
}

impl NodeRecord {
    /// The interval the node is judged by: the operator's, else the one its agent
    /// announces, else the cadence its heartbeats keep; before it has one, 120 s for an
    /// agent that announces none, and 30 s for a node not heard from.
    pub fn interval_secs(&self) -> u64 {
        if let Some(secs) = self.interval_override {
            return secs;
        }
        match &self.heartbeat {
            Some(hb) => hb.interval_secs.or(self.cadence_secs).unwrap_or(UNANNOUNCED_INTERVAL_SECS),
            None => DEFAULT_INTERVAL_SECS,
        }
    }

    /// Whether the node's outage was declared while a maintenance window or silence held
    /// its alerts, so that no channel has been told of it yet (`alerts::record` tells them
    /// when the hold ends, if it is still down).
    pub fn offline_alert_held(&self) -> bool {
        self.held_since.zip(self.down_since).is_some_and(|(held, down)| down >= held)
    }

    /// Whether the last heartbeat said the agent was shutting down cleanly.
    pub fn is_stopped(&self) -> bool {
        self.heartbeat.as_ref().is_some_and(Heartbeat::is_stopping)
    }

    /// The node's status; `grace_ms` is how long it may be silent before it counts as offline.
    pub fn status(&self, now_ms: i64, grace_ms: u64) -> Status {
        let Some(seen) = self.last_seen else {
            return Status::Pending;
        };
        if self.is_stopped() {
            return Status::Stopped;
        }
        let silent_ms = now_ms.saturating_sub(seen).max(0) as u64;
        let interval_ms = self.interval_secs() * 1000;
        if silent_ms * 2 <= interval_ms * 3 {
            Status::Online
        } else if silent_ms <= grace_ms {
            Status::Late
        } else {
            Status::Offline
        }
    }

    /// Takes in a heartbeat that arrived at `now_ms`; returns the one it replaces.
    pub fn record_heartbeat(&mut self, heartbeat: Heartbeat, now_ms: i64) -> Option<Heartbeat> {
        // An agent that sends no time of its own (Beacon's) has no skew to speak of.
        self.clock_skew_secs = hearth_wire::parse_rfc3339(&heartbeat.timestamp).map(|sent| (sent - now_ms) / 1000);
        self.last_seen = Some(now_ms);
        // A name an enrolment token gave (restic-manager names hosts when it mints) stays
        // until an agent configured with a name of its own says otherwise: an agent without
        // one sends its hostname, which replaces only a name that was a hostname already.
        let named_by_default = self.name.is_empty() || self.name == self.hostname;
        let named_by_id = self.name == self.node_id;
        self.hostname.clone_from(&heartbeat.hostname);
        if self.edited_at.is_none() {
            match heartbeat.name.as_ref().filter(|n| !n.is_empty()) {
                Some(name) => {
                    if named_by_default || *name != heartbeat.hostname {
                        self.name.clone_from(name);
                    }
                }
                // An agent that sends no name (V1's) is known by its hostname as that changes.
                None => {
                    if (named_by_default || named_by_id) && !heartbeat.hostname.trim().is_empty() {
                        self.name.clone_from(&heartbeat.hostname);
                    }
                }
            }
        }
        self.heartbeat.replace(heartbeat)
    }

    /// The node's tags: those its token or an operator gave (`tags`), then those its
    /// agent reports, unless an operator has edited them (then theirs alone). An agent
    /// can add tags, never drop an operator's: it cannot move itself out of its team's
    /// tag-filtered channel.
    pub fn all_tags(&self) -> Vec<String> {
        let mut all = self.tags.clone();
        let reported = self.heartbeat.as_ref().filter(|_| self.edited_at.is_none()).and_then(|hb| hb.tags.as_ref());
        for tag in reported.into_iter().flatten() {
            if !all.contains(tag) {
                all.push(tag.clone());
            }
        }
        all
    }

    /// How the node proves who it is.
    pub fn auth(&self) -> NodeAuth {
        match (&self.token_hash, &self.fleet_key) {
            (Some(_), _) => NodeAuth::AgentToken,
            (None, Some(_)) => NodeAuth::FleetKey,
            (None, None) => NodeAuth::Anonymous,
        }
    }

    /// Whether `GET /api/nodes?changed_since=` shows the node to a client whose copy was
    /// current at `since`: something was written about it since (a heartbeat, an edit, an
    /// alert, an acknowledgement), or time alone moved its status on.
    pub fn changed_between(&self, since: i64, now: i64, grace_ms: u64) -> bool {
        let written =
            [self.last_seen, self.edited_at, self.down_since, self.reminded_at, self.acked_at, self.first_seen]
                .into_iter()
                .flatten()
                .chain([self.enrolled_at])
                .any(|at| at > since);
        written || self.status(since, grace_ms) != self.status(now, grace_ms)
    }

    /// The node as `GET /api/nodes` shows it.
    pub fn view(&self, now_ms: i64, grace_ms: u64) -> NodeView {
        let hb = self.heartbeat.clone().unwrap_or_default();
        let facts = &self.enrolled_with;
        let heard = self.heartbeat.is_some();
        // A Beacon agent sends none of V1's fields: its heartbeat holds placeholders, not news.
        let v1 = heard && self.auth() != NodeAuth::FleetKey;
        NodeView {
            node_id: self.node_id.clone(),
            name: self.name.clone(),
            hostname: self.hostname.clone(),
            status: self.status(now_ms, grace_ms).as_str(),
            down_since: self.down_since.map(format_rfc3339),
            last_seen: self.last_seen.map(format_rfc3339),
            clock_skew_secs: self.clock_skew_secs,
            enrolled_at: format_rfc3339(self.enrolled_at),
            tags: self.all_tags(),
            interval_secs: self.interval_secs(),
            authenticated: self.auth() != NodeAuth::Anonymous,
            auth: self.auth(),
            fleet_key: self.fleet_key.clone(),
            metadata: self.metadata.as_deref().and_then(|m| miniserde::json::from_str(m).ok()),
            os_profile: v1.then_some(hb.os_profile),
            cloudflare_ok: v1.then_some(hb.cloudflare_ok),
            services_ok: v1.then_some(hb.services_ok),
            vaultmesh_root: v1.then_some(hb.vaultmesh_root),
            timestamp: (heard && !hb.timestamp.is_empty()).then_some(hb.timestamp),
            agent_version: hb.agent_version.or_else(|| facts.agent_version.clone()),
            os: hb.os.or_else(|| facts.os.clone()),
            arch: hb.arch.or_else(|| facts.arch.clone()),
            kernel: hb.kernel,
            ip_address: hb.ip_address,
            ip_addresses: hb.ip_addresses,
            cpu_cores: hb.cpu_cores.or(facts.cpu_cores),
            memory_mb: hb.memory_mb.or(facts.memory_mb),
            disk_gb: hb.disk_gb.or(facts.disk_gb),
            mem_available_mb: hb.mem_available_mb,
            disk_free_gb: hb.disk_free_gb,
            load: hb.load,
            uptime_secs: hb.uptime_secs,
            boot_id: hb.boot_id,
            seq: hb.seq,
            checks: hb.checks,
            state: hb.state.map(|s| if s == hearth_wire::State::Stopping { "stopping" } else { "running" }),
            uptime_24h: None,
            uptime_30d: None,
            maintenance_until: None,
            silenced_until: None,
            acked_at: self.acked_at.map(format_rfc3339),
        }
    }
}

/// One node in the API: its identity and status, then its latest heartbeat's fields.
#[derive(Serialize, Debug)]
pub struct NodeView {
    pub node_id: String,
    pub name: String,
    pub hostname: String,
    pub status: &'static str,
    /// When the node was declared offline (its offline alert), while it is.
    pub down_since: Option<String>,
    pub last_seen: Option<String>,
    pub clock_skew_secs: Option<i64>,
    pub enrolled_at: String,
    pub tags: Vec<String>,
    pub interval_secs: u64,
    /// Whether the node authenticates (with its own token, or a fleet key): not anonymous.
    pub authenticated: bool,
    /// How the node authenticates: `agent_token`, `fleet_key` or `anonymous`.
    pub auth: NodeAuth,
    /// The id of the fleet key it joined with, if one.
    pub fleet_key: Option<String>,
    /// A Beacon agent's `metadata`.
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    pub os_profile: Option<String>,
    pub cloudflare_ok: Option<bool>,
    pub services_ok: Option<bool>,
    pub vaultmesh_root: Option<String>,
    pub timestamp: Option<String>,
    pub agent_version: Option<String>,
    pub os: Option<String>,
    pub arch: Option<String>,
    pub kernel: Option<String>,
    pub ip_address: Option<String>,
    pub ip_addresses: Option<Vec<String>>,
    pub cpu_cores: Option<u64>,
    pub memory_mb: Option<u64>,
    pub disk_gb: Option<u64>,
    pub mem_available_mb: Option<u64>,
    pub disk_free_gb: Option<u64>,
    pub load: Option<Vec<f64>>,
    pub uptime_secs: Option<u64>,
    pub boot_id: Option<String>,
    pub seq: Option<u64>,
    pub checks: Option<Vec<Check>>,
    pub state: Option<&'static str>,
    /// The share of the last 24 hours the node was up (`uptime.rs`); `null` if none counts.
    pub uptime_24h: Option<f64>,
    /// The same over 30 days.
    pub uptime_30d: Option<f64>,
    /// Until when a maintenance window holds its alerts, while one does.
    pub maintenance_until: Option<String>,
    /// Until when a silence holds its alerts, while one does.
    pub silenced_until: Option<String>,
    /// When an operator acknowledged it, while it is down.
    pub acked_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(at: i64, interval: Option<u64>, stopping: bool) -> NodeRecord {
        let state = stopping.then_some(hearth_wire::State::Stopping);
        let heartbeat = Heartbeat { interval_secs: interval, state, ..Default::default() };
        NodeRecord { last_seen: Some(at), heartbeat: Some(heartbeat), ..Default::default() }
    }

    /// Kinds and states are stored and shown as the strings they always were: records
    /// written before they were enums still read, and the API and webhooks are unchanged.
    #[test]
    fn kinds_and_delivery_states_keep_their_stored_names() {
        use EventKind::*;
        let kinds = [
            Offline,
            Recovered,
            Stopped,
            Reboot,
            CheckFailed,
            CheckRecovered,
            ServicesFailed,
            ServicesRecovered,
            ClockSkew,
            Reminder,
            Pending,
            Flapping,
            FlappingStopped,
            Test,
        ];
        for kind in kinds {
            let text = miniserde::json::to_string(&kind);
            assert_eq!(text, format!("\"{}\"", kind.as_str()));
            assert_eq!(miniserde::json::from_str::<EventKind>(&text).unwrap(), kind);
        }
        let stored = r#"{"id":3,"kind":"check_failed","node_id":"n","name":"pi","hostname":"pi","tags":[],
            "check":"cloudflared","detail":"x","at":1,"down_since":null,"deliveries":[{"channel":"hook",
            "state":"pending","attempts":0,"next_attempt":1,"last_error":null,"delivered_at":null}]}"#;
        let alert: AlertRecord = miniserde::json::from_str(stored).unwrap();
        assert_eq!((alert.kind, alert.deliveries[0].state), (CheckFailed, DeliveryState::Pending));
        for (state, text) in [
            (DeliveryState::Pending, "pending"),
            (DeliveryState::Delivered, "delivered"),
            (DeliveryState::Failed, "failed"),
            (DeliveryState::Dropped, "dropped"),
        ] {
            assert_eq!(miniserde::json::to_string(&state), format!("\"{text}\""));
        }
    }

    #[test]
    fn status_follows_the_interval() {
        let cases = [
            (Default::default(), 1_000_000, Status::Pending),
            (seen(0, Some(10), false), 0, Status::Online),
            (seen(0, Some(10), false), 15_000, Status::Online),
            (seen(0, Some(10), false), 15_001, Status::Late),
            (seen(0, Some(10), false), 30_000, Status::Late),
            (seen(0, Some(10), false), 30_001, Status::Offline),
            // An agent that announces no interval: 120 s until its cadence is known.
            (seen(0, None, false), 180_000, Status::Online),
            (seen(0, None, false), 360_001, Status::Offline),
            (NodeRecord { cadence_secs: Some(20), ..seen(0, None, false) }, 30_001, Status::Late),
            (NodeRecord { cadence_secs: Some(20), ..seen(0, Some(10), false) }, 15_001, Status::Late),
            (seen(0, Some(10), true), 1, Status::Stopped),
            (seen(0, Some(10), true), 1_000_000, Status::Stopped),
            (seen(10_000, Some(10), false), 0, Status::Online), // a clock that went backwards
        ];
        for (node, now, expected) in cases {
            let grace_ms = node.interval_secs() * 3000;
            assert_eq!(node.status(now, grace_ms), expected, "now={now} node={node:?}");
        }
    }

    #[test]
    fn a_node_changed_if_written_or_if_time_moved_its_status() {
        let node = seen(100_000, Some(10), false);
        let grace = 30_000;
        let cases = [
            (99_999, 100_001, true),   // its heartbeat came after
            (100_000, 110_000, false), // still online
            (110_000, 120_000, true),  // online → late at 115 s
            (120_000, 125_000, false), // late throughout
            (125_000, 131_000, true),  // late → offline at 130 s
            (131_000, 999_000, false), // offline throughout
        ];
        for (since, now, expected) in cases {
            assert_eq!(node.changed_between(since, now, grace), expected, "since {since}, now {now}");
        }
        let acked = NodeRecord { acked_at: Some(131_500), ..node };
        assert!(acked.changed_between(131_000, 999_000, grace), "an acknowledgement is a change");
    }

    #[test]
    fn an_agent_adds_tags_but_never_drops_an_operators() {
        let mut node = NodeRecord { tags: vec!["team-a".into()], ..Default::default() };
        let beat = |tags: &[&str]| Heartbeat {
            tags: Some(tags.iter().map(|t| t.to_string()).collect()),
            ..Default::default()
        };
        node.record_heartbeat(beat(&[]), 0);
        assert_eq!(node.all_tags(), ["team-a"]);
        node.record_heartbeat(beat(&["team-b", "team-a", "lab"]), 0);
        assert_eq!(node.all_tags(), ["team-a", "team-b", "lab"]);
        assert_eq!(node.tags, ["team-a"], "the operator's tags are kept apart");
        node.edited_at = Some(0);
        node.tags = vec!["operator".into()];
        node.record_heartbeat(beat(&["agent"]), 0);
        assert_eq!(node.all_tags(), ["operator"], "once an operator edited them, the tags are theirs");
    }

    #[test]
    fn skew_is_agent_minus_collector() {
        let mut node: NodeRecord = Default::default();
        let hb = Heartbeat { timestamp: "1970-01-01T00:01:40Z".into(), ..Default::default() };
        node.record_heartbeat(hb, 40_000);
        assert_eq!(node.clock_skew_secs, Some(60));
        assert_eq!(node.last_seen, Some(40_000));
    }

    /// A name from the enrolment token survives an agent that sends its hostname as its
    /// name; a name the agent was configured with, or a hostname that changed, still wins.
    #[test]
    fn a_token_given_name_outlives_the_default_one() {
        let beat = |hostname: &str, name: &str| Heartbeat {
            hostname: hostname.into(),
            name: Some(name.into()),
            ..Default::default()
        };
        let cases = [
            ("newhost.example", "vm", beat("vm", "vm"), "newhost.example"),
            ("newhost.example", "vm", beat("vm", "web-1"), "web-1"),
            ("vm", "vm", beat("vm2", "vm2"), "vm2"),
            ("", "", beat("vm", "vm"), "vm"),
        ];
        for (name, hostname, hb, expected) in cases {
            let mut node = NodeRecord { name: name.into(), hostname: hostname.into(), ..Default::default() };
            node.record_heartbeat(hb, 0);
            assert_eq!(node.name, expected, "{name:?} on {hostname:?}");
        }
    }
}

/// A scheduled job watched by its pings (`jobs.rs`), stored under its `id`.
/// Times are Unix milliseconds by the collector's clock.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct JobRecord {
    /// A short public id, for the API, events and alerts: not a credential.
    pub id: String,
    /// The UUID in its ping URL (`/ping/<uuid>`): whoever knows it can ping.
    pub uuid: String,
    pub name: String,
    /// The name in the slug URL (`/ping/<ping-key>/<slug>`); unique.
    pub slug: String,
    pub tags: Vec<String>,
    /// Expected every this many seconds; `None` when `cron` is set.
    pub period_secs: Option<u64>,
    /// A 5-field cron expression, read in `tz`.
    pub cron: Option<String>,
    /// An IANA time zone name; `None` means UTC.
    pub tz: Option<String>,
    /// How late past an expected run (or how long after a start) before it is down.
    pub grace_secs: u64,
    pub created_at: i64,
    pub paused: bool,
    /// When it was last resumed: nobody pinged it while it was paused, so it has its grace
    /// from then (`jobs::down_at`).
    pub resumed_at: Option<i64>,
    /// The last ping of any kind.
    pub last_ping: Option<i64>,
    pub last_ping_kind: Option<PingKind>,
    pub last_success: Option<i64>,
    /// From the matching start to the last success or failure.
    pub last_duration_ms: Option<i64>,
    /// Runs started and not yet finished, oldest first (at most `jobs::OPEN_RUNS`).
    pub open_runs: Vec<OpenRun>,
    /// Whether the last finish was a failure (until a success).
    pub failed: bool,
    /// When the down (late) or failed alert went out; `None` while up.
    pub down_since: Option<i64>,
    pub reminded_at: Option<i64>,
    /// When the sweep next looks at this job (its key in the job deadline index).
    pub deadline: Option<i64>,
    /// Pings received so far: the next ping's number, and the key of the ring of the last 100.
    pub pings: u64,
}

/// A run that sent `/start` and has not finished.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct OpenRun {
    pub rid: Option<String>,
    pub at: i64,
}

/// What a ping said.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingKind {
    #[serde(rename = "success")]
    Success,
    #[serde(rename = "start")]
    Start,
    #[serde(rename = "fail")]
    Fail,
    #[serde(rename = "log")]
    Log,
}

impl PingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PingKind::Success => "success",
            PingKind::Start => "start",
            PingKind::Fail => "fail",
            PingKind::Log => "log",
        }
    }
}

/// One ping, kept in the job's ring of the last `jobs::PINGS_KEPT`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PingRecord {
    /// Its number among the job's pings, from 0.
    pub n: u64,
    pub at: i64,
    pub kind: PingKind,
    /// The exit status, for `/ping/<uuid>/<status>`.
    pub exit_status: Option<u64>,
    pub rid: Option<String>,
    /// For a finish that matched a start: how long the run took.
    pub duration_ms: Option<i64>,
    /// The request body, cut to `jobs::LOG_KEPT` bytes: the run's log.
    pub log: String,
    /// The body's full length, to say how much was cut.
    pub log_bytes: u64,
    pub method: String,
    pub client: String,
}
