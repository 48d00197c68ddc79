//! Command-line parsing. Flags are collected by the environment name they override.

use crate::config::Flags;
use lexopt::prelude::*;

pub const HELP: &str = "\
hearth-agent: tells your Hearth collector, every interval, that this node is alive

Usage:
  hearth-agent init [--name N] [--collector URL]   create this node's id; no network
  hearth-agent enroll --token T [--collector URL]  trade a one-time token or a fleet key for an agent token
  hearth-agent login --api-key K [--name N]        the same, as Beacon spells it (also `cloud login`)
  hearth-agent run                                 send a heartbeat every interval (the daemon; also
                                                   `start`); with HEARTH_TOKEN set and no agent token
                                                   yet, enrol first, retrying until the collector answers
  hearth-agent once                                send one heartbeat now
  hearth-agent check                               print the heartbeat it would send; send nothing
  hearth-agent config show                         print paths, name, collector, node id
  hearth-agent logout                              forget the token and stop reporting (also `cloud logout`)
  hearth-agent install-service [--user]            write the systemd unit for this binary and start it
                                                   (--user: a user unit, for hosts without root)

Options (each overrides the environment variable named after it):
  --collector URL        HEARTH_COLLECTOR_URL (V1: VAULTMESH_CC_URL) [default http://127.0.0.1:8088]
  --name NAME            HEARTH_NAME (Beacon: BEACON_DEVICE_NAME) [default: the hostname]
  --token TOKEN          HEARTH_TOKEN (Beacon: BEACON_API_KEY), the enrolment token or fleet
                         key for `enroll`, and for `run` until it has an agent token
  --api-key KEY          the same as --token, as Beacon's `login` spells it
  --interval SECS        HEARTH_INTERVAL_SECS (V1: VAULTMESH_HEARTBEAT_SECS) [default 30]
  --state-dir DIR        HEARTH_STATE_DIR [default /var/lib/hearth-agent, or ~/.hearth when not root]
  --config FILE          HEARTH_CONFIG, an env file [default /etc/hearth/agent.env,
                         else /etc/vaultmesh/agent.env]
  --allow-insecure-http  HEARTH_ALLOW_INSECURE_HTTP: allow http:// to public addresses
  -h, --help             print this help
  -V, --version          print the version

Other settings, from the environment or the env file: HEARTH_OS_PROFILE, HEARTH_ROOT,
HEARTH_CHECK_SERVICES [default cloudflared], HEARTH_CHECK_PATHS, HEARTH_TAGS, HEARTH_NODE_ID,
HEARTH_CHECK_UNITS (units whose last run must have succeeded within an age, like
restic-backup.service@26h,certbot.service@8d), RUST_LOG, and the V1 names
VAULTMESH_NODE_ID, VAULTMESH_OS_PROFILE, VAULTMESH_ROOT.
Precedence: flags > environment > env file > settings saved by init/enroll > defaults.

Exit status: 0 success; 1 failure (the message says what failed); 2 bad usage or configuration.
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Init,
    Enroll,
    Run,
    Once,
    Check,
    ConfigShow,
    Logout,
    /// `--user`: a user unit rather than a system one.
    InstallService {
        user: bool,
    },
    Help,
    Version,
}

pub fn parse(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<(Command, Flags), String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut flags = Flags::new();
    let mut words = Vec::new();
    let mut user = false;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        let key = match arg {
            Short('h') | Long("help") => return Ok((Command::Help, flags)),
            Short('V') | Long("version") => return Ok((Command::Version, flags)),
            Long("allow-insecure-http") => {
                flags.insert("HEARTH_ALLOW_INSECURE_HTTP", "true".into());
                continue;
            }
            Long("user") => {
                user = true;
                continue;
            }
            Value(word) => {
                words.push(word.string().map_err(|e| e.to_string())?);
                continue;
            }
            Long("collector") => "HEARTH_COLLECTOR_URL",
            Long("name") => "HEARTH_NAME",
            Long("token") | Long("api-key") => "HEARTH_TOKEN",
            Long("interval") => "HEARTH_INTERVAL_SECS",
            Long("state-dir") => "HEARTH_STATE_DIR",
            Long("config") => "HEARTH_CONFIG",
            _ => return Err(arg.unexpected().to_string()),
        };
        let value = parser.value().and_then(|v| v.string()).map_err(|e| e.to_string())?;
        flags.insert(key, value);
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let command = match words.as_slice() {
        ["init"] => Command::Init,
        // Beacon's names for the same commands, so its users' habits and units keep working.
        ["enroll" | "enrol" | "login"] | ["cloud", "login"] => Command::Enroll,
        ["run" | "start"] => Command::Run,
        ["once"] => Command::Once,
        ["check"] => Command::Check,
        ["config", "show"] | ["config"] => Command::ConfigShow,
        ["logout"] | ["cloud", "logout"] => Command::Logout,
        ["install-service"] => Command::InstallService { user },
        [] => return Err("no command given; try `hearth-agent run`, or --help".into()),
        other => return Err(format!("unknown command `{}`; see --help", other.join(" "))),
    };
    Ok((command, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_flags() {
        let parse = |line: &str| parse(line.split_whitespace().map(Into::into));
        let (command, flags) = parse("enroll --token hen_x --collector=https://c").unwrap();
        assert_eq!(command, Command::Enroll);
        assert_eq!(flags["HEARTH_TOKEN"], "hen_x");
        assert_eq!(flags["HEARTH_COLLECTOR_URL"], "https://c");
        assert_eq!(parse("config show").unwrap().0, Command::ConfigShow);
        assert_eq!(parse("run --allow-insecure-http").unwrap().1["HEARTH_ALLOW_INSECURE_HTTP"], "true");
        assert_eq!(parse("install-service --user").unwrap().0, Command::InstallService { user: true });
        assert_eq!(parse("start").unwrap().0, Command::Run);
        assert_eq!(parse("cloud logout").unwrap().0, Command::Logout);
        for line in ["login --api-key usr_k --name pi", "cloud login --api-key usr_k --name pi"] {
            let (command, flags) = parse(line).unwrap();
            assert_eq!(command, Command::Enroll, "{line}");
            assert_eq!((flags["HEARTH_TOKEN"].as_str(), flags["HEARTH_NAME"].as_str()), ("usr_k", "pi"));
        }
        for bad in ["", "fly", "run --bogus", "enroll --token"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
