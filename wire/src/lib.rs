//! The JSON messages that `hearth-agent` and `hearth-collector` exchange.
//!
//! These structs are the wire contract described in `docs/protocol.md`:
//! fields are added, never renamed or removed.
//! Parsing goes through [`fields::Fields`] rather than miniserde's derive,
//! because a client that sends a bad field deserves to be told which one.

mod beacon;
mod enroll;
pub mod fields;
mod heartbeat;
mod id;
pub mod paths;
mod timestamp;

pub use beacon::{BeaconAck, BeaconHeartbeat, BEACON_EXAMPLE, MAX_DEVICE_NAME};
pub use enroll::{EnrollRequest, EnrollResponse};
pub use fields::WireError;
pub use heartbeat::{Check, Heartbeat, HeartbeatAck, State, MAX_INTERVAL_SECS};
pub use id::{canonical_node_id, is_uuid, is_uuid_v4, uuid_v4_from_bytes};
pub use timestamp::{format_rfc3339, parse_rfc3339};

use miniserde::{Deserialize, Serialize};

/// The body of every HTTP error the collector returns.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ErrorBody {
    /// A stable snake_case identifier, for programs.
    pub code: String,
    /// A sentence a person can act on.
    pub error: String,
    /// The same sentence, for clients (restic-manager's) that read `message`; absent from
    /// collectors before it was added, so optional here.
    pub message: Option<String>,
}
