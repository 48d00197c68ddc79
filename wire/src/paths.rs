//! Where agents send what they send: the one list both binaries use.

/// Heartbeats (V1's path).
pub const HEARTBEAT: &str = "/api/agent/heartbeat";
/// Heartbeats, at the path Beacon agents post to.
pub const HEARTBEAT_SHORT: &str = "/agent/heartbeat";
/// Enrolment with a one-time token.
pub const ENROLL: &str = "/api/agents/enroll";
