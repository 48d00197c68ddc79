//! One request through the collector's routing, authorization and handlers, on a real
//! store (see collector/src/fuzzing.rs for the input's shape): never a panic, and every
//! JSON error carries a code and a message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hearth_collector::fuzzing::request(data));
