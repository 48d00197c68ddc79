//! The agent's systemd `EnvironmentFile=` parser: never a panic, and an error names a
//! line that exists.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../agent/src/envfile.rs"]
#[allow(dead_code)]
mod envfile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = envfile::parse(text) {
        assert!(e.line >= 1 && e.line <= text.lines().count().max(1), "line {} of {}", e.line, text.lines().count());
    }
});
