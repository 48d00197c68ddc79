//! An enrolment body as the collector parses it: never a panic.
#![no_main]

use hearth_wire::EnrollRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = std::str::from_utf8(data) {
        let _ = EnrollRequest::from_json(body);
    }
});
