//! Building one heartbeat from configuration, checks and host facts.

use crate::checks;
use crate::config::Config;
use crate::facts;
use crate::transport::Collector;
use crate::units;
use hearth_wire::{format_rfc3339, Heartbeat, State};
use std::time::{SystemTime, UNIX_EPOCH};

pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Builds the heartbeat numbered `seq` for `node_id`.
pub async fn build(config: &Config, collector: &Collector, node_id: &str, seq: u64, state: State) -> Heartbeat {
    let facts = facts::gather("/");
    let absent = if config.check_services_defaulted { checks::Absent::Skipped } else { checks::Absent::Failing };
    let mut outcome = checks::run(&config.root, &config.check_services, &config.check_paths, absent).await;
    if !config.check_units.is_empty() {
        let systemd = std::path::Path::new("/run/systemd/system").is_dir();
        let units = units::run(&config.check_units, systemd).await;
        outcome.services_ok &= units.iter().all(|c| c.ok);
        outcome.checks.extend(units);
    }
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    // Resolving the collector's name may block (a slow resolver); keep it off the loop,
    // which must stay free to notice a signal.
    let (host, port) = (collector.host.clone(), collector.port);
    let ip_address = smol::unblock(move || facts::primary_ip(&host, port)).await;
    let name = config.name.clone().unwrap_or_else(|| facts.hostname.clone());
    Heartbeat {
        node_id: node_id.to_owned(),
        hostname: facts.hostname,
        os_profile: config.os_profile.clone().or(facts.os_id).unwrap_or_else(|| "linux".into()),
        cloudflare_ok: outcome.cloudflare_ok,
        services_ok: outcome.services_ok,
        vaultmesh_root: config.root.clone(),
        timestamp: format_rfc3339(now_ms),
        name: Some(name),
        agent_version: Some(AGENT_VERSION.into()),
        os: Some(std::env::consts::OS.into()),
        arch: Some(facts.arch),
        kernel: facts.kernel,
        tags: Some(config.tags.clone()),
        ip_address,
        ip_addresses: Some(facts.ip_addresses),
        cpu_cores: facts.cpu_cores,
        memory_mb: facts.memory_mb,
        disk_gb: facts.disk_gb,
        mem_available_mb: facts.mem_available_mb,
        disk_free_gb: facts.disk_free_gb,
        load: facts.load,
        uptime_secs: facts.uptime_secs,
        boot_id: facts.boot_id,
        seq: Some(seq),
        interval_secs: Some(config.interval_secs),
        checks: Some(outcome.checks),
        state: Some(state),
    }
}
