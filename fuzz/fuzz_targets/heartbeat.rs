//! A heartbeat body as the collector parses it: never a panic, and whatever parses
//! survives a round trip through the agent's serialisation.
#![no_main]

use hearth_wire::Heartbeat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else { return };
    if let Ok(heartbeat) = Heartbeat::from_json(body) {
        let again = Heartbeat::from_json(&miniserde::json::to_string(&heartbeat));
        assert!(again.is_ok(), "a parsed heartbeat does not parse again: {again:?}");
    }
});
