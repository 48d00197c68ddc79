//! Integration tests: the real `hearth-collector` binary on 127.0.0.1 port 0.

mod activation;
mod alertmanager;
mod alerts;
mod beacon;
mod changes;
mod chaos;
mod contract;
mod durability;
mod enrolment;
mod errors;
mod fairness;
mod floods;
mod isolation;
mod jobs;
mod keepalive;
mod maintenance;
mod metrics;
mod operators;
mod proxy;
mod status;
mod support;
mod units;
mod uptime;
mod watchdog;
mod wrenn;
