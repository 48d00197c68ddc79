//! End-to-end tests: the real `hearth-agent` against the real `hearth-collector`, on loopback.

#[path = "../../../collector/tests/it/support.rs"]
#[allow(dead_code)]
mod support;

mod agent;
mod daemon;
mod dashboard;
mod edge;
mod fleet;
mod hostile;
mod install;
mod tls;
