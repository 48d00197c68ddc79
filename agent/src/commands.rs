//! What each agent command does.

use crate::beat::{self, AGENT_VERSION};
use crate::cli::Command;
use crate::config::{Config, Flags};
use crate::daemon::Daemon;
use crate::facts;
use crate::state::State;
use crate::transport::{Collector, ProxyEnv, SendError};
use hearth_wire::{EnrollRequest, EnrollResponse};

/// A failed command: the exit code and what to tell the person.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure { code: 1, message }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure { code: 1, message: message.to_owned() }
    }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure { code: 2, message: message.into() }
}

pub fn run(command: Command, flags: &Flags, config: Config, proxies: ProxyEnv) -> Result<(), Failure> {
    let state = State::new(&config.state_dir);
    let collector =
        Collector::parse(&config.collector_url, config.allow_insecure_http).map_err(usage)?.with_proxies(proxies);
    match command {
        Command::Init => init(&config, flags, &state),
        Command::Enroll => enroll(&config, flags, &state, &collector),
        Command::Run => {
            if state.logged_out() {
                log::info!("reporting is off since `hearth-agent logout`; run `hearth-agent enroll` to report again");
                return Ok(());
            }
            if let Err(SendError::Refused(reason)) = collector.check_transport() {
                return Err(usage(reason));
            }
            if state.token()?.is_none() {
                if let Some(token) = config.enroll_token.clone() {
                    enroll_on_first_start(&config, flags, &state, &collector, &token)?;
                }
            }
            let daemon = daemon(config, &state, collector)?;
            smol::block_on(daemon.run()).map_err(Failure::from)
        }
        Command::Once => {
            if state.logged_out() {
                return Err(usage("reporting is off since `hearth-agent logout`; run `hearth-agent enroll` first"));
            }
            let daemon = daemon(config, &state, collector)?;
            let heartbeat = smol::block_on(beat::build(
                &daemon.config,
                &daemon.collector,
                &daemon.node_id,
                1,
                hearth_wire::State::Running,
            ));
            daemon.send(&heartbeat, 15).map_err(|e| Failure::from(format!("the heartbeat was not delivered: {e}")))?;
            println!("heartbeat delivered to {} for node {}", daemon.collector.base, daemon.node_id);
            Ok(())
        }
        Command::Check => {
            let node_id = match &config.node_id {
                Some(id) => id.clone(),
                None => state.node_id()?.unwrap_or_else(|| "00000000-0000-4000-8000-000000000000".into()),
            };
            let heartbeat = smol::block_on(beat::build(&config, &collector, &node_id, 1, hearth_wire::State::Running));
            println!("{}", miniserde::json::to_string(&heartbeat));
            Ok(())
        }
        Command::ConfigShow => {
            let node_id = config.node_id.clone().or(state.node_id()?);
            let token = if state.logged_out() {
                "no (logged out)"
            } else if state.token()?.is_some() {
                "yes"
            } else {
                "no"
            };
            println!(
                "config file:    {}",
                config.config_file.as_ref().map_or("(none)".into(), |p| p.display().to_string())
            );
            println!("state dir:      {}", config.state_dir.display());
            println!("collector:      {}", collector.base);
            println!("name:           {}", config.name.as_deref().unwrap_or("(the hostname)"));
            println!("node id:        {}", node_id.as_deref().unwrap_or("(none yet; run `hearth-agent init`)"));
            println!("token stored:   {token}");
            let key = if config.enroll_token.is_some() {
                "set (never shown); `run` enrols with it if no token is stored"
            } else {
                "none"
            };
            println!("enrol token:    {key}");
            println!("interval:       {} s", config.interval_secs);
            println!("root path:      {}", config.root);
            println!("services:       {}", config.check_services.join(", "));
            println!("paths:          {}", config.check_paths.join(", "));
            Ok(())
        }
        Command::Logout => {
            state.logout()?;
            println!("token forgotten; this node will not report until `hearth-agent enroll` runs again");
            Ok(())
        }
        Command::InstallService { user } => install_service(user),
        Command::Help | Command::Version => Ok(()),
    }
}

fn init(config: &Config, flags: &Flags, state: &State) -> Result<(), Failure> {
    state.create_dir()?;
    let (node_id, created) = match &config.node_id {
        Some(id) => {
            state.set_node_id(id)?;
            (id.clone(), true)
        }
        None => state.node_id_or_create()?,
    };
    remember(flags, state)?;
    let verb = if created { "created" } else { "kept" };
    println!("node id {node_id} ({verb}) in {}", state.dir().display());
    Ok(())
}

/// Saves the name and collector given as flags, so that `run` later reports the same way.
fn remember(flags: &Flags, state: &State) -> Result<(), Failure> {
    let given: Vec<(&str, &str)> = ["HEARTH_NAME", "HEARTH_COLLECTOR_URL"]
        .into_iter()
        .filter_map(|key| flags.get(key).map(|value| (key, value.as_str())))
        .collect();
    if !given.is_empty() {
        state.save_settings(&given)?;
    }
    Ok(())
}

fn enroll(config: &Config, flags: &Flags, state: &State, collector: &Collector) -> Result<(), Failure> {
    let token = config.enroll_token.clone().filter(|t| !t.is_empty()).ok_or_else(|| {
        usage(
            "enroll needs a token: hearth-agent enroll --token TOKEN, or login --api-key KEY \
             (mint one on the collector: `token create`, or a fleet key with `fleetkey create`)",
        )
    })?;
    let enrolled = enroll_with(config, flags, state, collector, &token).map_err(|e| {
        let hint = match &e {
            EnrolFailure::Collector(SendError::Rejected { status: 401, .. }) => {
                "; check the token was copied whole and minted on this collector"
            }
            EnrolFailure::Collector(SendError::Network(_)) => {
                "; check the collector URL and that the collector is running"
            }
            _ => "",
        };
        Failure::from(format!("enrolment failed: {e}{hint}"))
    })?;
    println!("enrolled with {} as node {}", collector.base, enrolled);
    Ok(())
}

/// `run` with an enrolment token or fleet key and no agent token yet (a freshly flashed
/// image): enrol first. The collector being away, or overloaded, is waited out with
/// backoff, for as long as it takes; only a refusal (a bad, used-up or revoked key) ends
/// the agent, since trying again cannot change it.
fn enroll_on_first_start(
    config: &Config,
    flags: &Flags,
    state: &State,
    collector: &Collector,
    token: &str,
) -> Result<(), Failure> {
    log::info!("no agent token yet: enrolling with {} using the configured token", collector.base);
    let (mut failures, mut renewed) = (0u32, false);
    loop {
        match enroll_with(config, flags, state, collector, token) {
            Ok(node_id) => {
                log::info!("enrolled with {} as node {node_id}", collector.base);
                return Ok(());
            }
            // The node id came with the image (its state directory was not left out): every
            // copy holds the same one, and the collector has it already. This copy makes its own.
            Err(EnrolFailure::Collector(SendError::Rejected { status: 409, .. }))
                if config.node_id.is_none() && !renewed =>
            {
                let old = state.node_id().ok().flatten().unwrap_or_default();
                log::warn!("node id {old} is already on the collector (copied with the image?); making a new one");
                state.forget_node_id().map_err(Failure::from)?;
                renewed = true;
            }
            Err(e) if e.is_retryable() => {
                failures = failures.saturating_add(1);
                let wait = crate::daemon::retry_delay(failures, config.interval_secs.max(60) * 1000)?;
                log::warn!("enrolment failed: {e}; retrying in {:.1} s", wait.as_secs_f64());
                std::thread::sleep(wait);
            }
            Err(e) => {
                return Err(Failure::from(format!(
                    "enrolment refused: {e}; fix HEARTH_TOKEN (mint a fresh key or token) and restart the agent"
                )));
            }
        }
    }
}

/// Why an enrolment did not happen: the collector (unreachable, or it refused), or this host.
enum EnrolFailure {
    Collector(SendError),
    Here(String),
}

impl EnrolFailure {
    /// Whether trying again later may work: the collector was away, busy or failing.
    fn is_retryable(&self) -> bool {
        matches!(
            self,
            EnrolFailure::Collector(SendError::Network(_) | SendError::Rejected { status: 408 | 429 | 500..=599, .. })
        )
    }
}

impl From<SendError> for EnrolFailure {
    fn from(e: SendError) -> EnrolFailure {
        EnrolFailure::Collector(e)
    }
}

impl std::fmt::Display for EnrolFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnrolFailure::Collector(e) => e.fmt(f),
            EnrolFailure::Here(message) => f.write_str(message),
        }
    }
}

/// Trades `token` for a node id and an agent token, and stores them; returns the node id.
fn enroll_with(
    config: &Config,
    flags: &Flags,
    state: &State,
    collector: &Collector,
    token: &str,
) -> Result<String, EnrolFailure> {
    let local = EnrolFailure::Here;
    state.create_dir().map_err(local)?;
    let node_id = match &config.node_id {
        Some(id) => id.clone(),
        None => state.node_id_or_create().map_err(local)?.0,
    };
    let facts = facts::gather("/");
    let request = EnrollRequest {
        token: token.trim().to_owned(),
        hostname: facts.hostname.clone(),
        os: Some(std::env::consts::OS.into()),
        arch: Some(facts.arch),
        agent_version: Some(AGENT_VERSION.into()),
        node_id: Some(node_id),
        name: config.name.clone(),
        tags: Some(config.tags.clone()),
        cpu_cores: facts.cpu_cores,
        memory_mb: facts.memory_mb,
        disk_gb: facts.disk_gb,
    };
    let body = miniserde::json::to_string(&request);
    // Enrolling again (the installer's HEARTH_FORCE_REENROLL): the agent token this node
    // holds proves the node id is its own, so the collector lets the new token take it
    // over rather than answer 409, and the node keeps its history. A token file that holds
    // no token proves nothing, and enrolling is how it is mended.
    let held = state.token().ok().flatten();
    let answer = collector.post_hiding(hearth_wire::paths::ENROLL, &body, held.as_deref(), &[token], 30)?;
    let enrolled: EnrollResponse = miniserde::json::from_str(&answer)
        .map_err(|_| local(format!("the enrolment answer from {} is not what Hearth sends", collector.base)))?;
    if !hearth_wire::is_uuid(&enrolled.node_id) || enrolled.agent_token.is_empty() {
        return Err(local("the enrolment answer holds no usable node id or token".to_owned()));
    }
    state.set_node_id(&enrolled.node_id).map_err(local)?;
    state.set_token(&enrolled.agent_token).map_err(local)?;
    remember(flags, state).map_err(|f| local(f.message))?;
    Ok(enrolled.node_id)
}

const SYSTEM_UNIT: &str = include_str!("../../systemd/hearth-agent.service");
const USER_UNIT: &str = include_str!("../../systemd/user/hearth-agent.service");

/// Writes the systemd unit for this very binary, then enables and (re)starts it
/// (unless `HEARTH_NO_SYSTEMD=1`, when it says what to run instead).
fn install_service(user: bool) -> Result<(), Failure> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot tell where this binary is: {e}"))?;
    let exe = exe.to_str().ok_or("the path of this binary is not UTF-8; move it to /usr/local/bin")?;
    let (dir, unit, scope): (std::path::PathBuf, String, &[&str]) = if user {
        let home =
            std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or("HOME is not set; it says where user units go")?;
        let home = std::path::PathBuf::from(home);
        // The user unit reads its settings with --config; make sure there is a file to read.
        let env_file = home.join(".config/hearth/agent.env");
        if !env_file.exists() {
            let parent = env_file.parent().expect("a file in a directory");
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            let text = "# Hearth agent settings; see `hearth-agent --help`.\n# HEARTH_COLLECTOR_URL=https://hearth.example.com\n";
            crate::state::write_private(&env_file, text)?;
            println!("wrote {} (set HEARTH_COLLECTOR_URL there)", env_file.display());
        }
        (home.join(".config/systemd/user"), USER_UNIT.replace("%h/.local/bin/hearth-agent", exe), &["--user"])
    } else {
        ("/etc/systemd/system".into(), SYSTEM_UNIT.replace("/usr/local/bin/hearth-agent", exe), &[])
    };
    let path = dir.join("hearth-agent.service");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::write(&path, unit).map_err(|e| {
        let hint = if user { "" } else { "; run it as root, or use --user" };
        format!("cannot write {}: {e}{hint}", path.display())
    })?;
    println!("wrote {}", path.display());
    let systemctl = |args: &[&str]| -> Result<(), Failure> {
        let all: Vec<&str> = scope.iter().chain(args).copied().collect();
        let out = std::process::Command::new("systemctl")
            .args(&all)
            .output()
            .map_err(|e| format!("cannot run systemctl {}: {e}", all.join(" ")))?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            return Err(format!("systemctl {} failed: {}", all.join(" "), why.trim()).into());
        }
        Ok(())
    };
    let user_flag = if user { " --user" } else { "" };
    if std::env::var("HEARTH_NO_SYSTEMD").is_ok_and(|v| v == "1") {
        println!(
            "start it with: systemctl{user_flag} daemon-reload && systemctl{user_flag} enable hearth-agent && systemctl{user_flag} restart hearth-agent"
        );
        return Ok(());
    }
    systemctl(&["daemon-reload"])?;
    systemctl(&["enable", "hearth-agent.service"])?;
    // Restart, not `start`: an agent already running keeps the binary, unit and settings
    // it started with, and installing again is how a node gets new ones.
    systemctl(&["restart", "hearth-agent.service"])?;
    println!("hearth-agent is enabled and running; see `systemctl{user_flag} status hearth-agent`");
    if user {
        println!("to keep it running while you are logged out: loginctl enable-linger \"$USER\"");
    }
    Ok(())
}

fn daemon(config: Config, state: &State, collector: Collector) -> Result<Daemon, Failure> {
    let node_id = match &config.node_id {
        Some(id) => id.clone(),
        None => {
            let (id, created) = state.node_id_or_create()?;
            if created {
                log::info!("created node id {id} in {}", state.dir().display());
            }
            id
        }
    };
    let token = state.token()?;
    Ok(Daemon { config, collector, node_id, token, state: state.clone() })
}
