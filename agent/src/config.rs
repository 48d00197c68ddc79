//! The agent's settings: flags, then environment, then the env file, then what
//! `init`/`enroll` saved in the state directory, then defaults.
//! The V1 `VAULTMESH_*` names are read wherever the `HEARTH_*` ones are.

use crate::envfile;
use hearth_wire::MAX_INTERVAL_SECS;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG: &str = "/etc/hearth/agent.env";
/// Read when the default config file is absent, so a V1 install keeps working.
pub const V1_CONFIG: &str = "/etc/vaultmesh/agent.env";
pub const DEFAULT_COLLECTOR: &str = "http://127.0.0.1:8088";
/// The file in the state directory where `init` and `enroll` remember settings.
pub const SAVED_SETTINGS: &str = "settings.env";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Said once logging is set up: names in the config file that are no setting (a typo).
    pub warnings: Vec<String>,
    pub collector_url: String,
    pub name: Option<String>,
    pub state_dir: PathBuf,
    pub interval_secs: u64,
    pub os_profile: Option<String>,
    /// The path whose presence `services_ok` reports (V1: `VAULTMESH_ROOT`).
    pub root: String,
    pub check_services: Vec<String>,
    /// Whether `check_services` is the default list rather than one the operator gave:
    /// a default service the host does not have is left out rather than failing.
    pub check_services_defaulted: bool,
    pub check_paths: Vec<String>,
    /// Units whose last run must have succeeded recently (`HEARTH_CHECK_UNITS`, `units.rs`).
    pub check_units: Vec<crate::units::UnitCheck>,
    pub tags: Vec<String>,
    /// An enrolment token or fleet key (`HEARTH_TOKEN`, or Beacon's `BEACON_API_KEY`): what
    /// `enroll` trades for an agent token, and `run` too, on its first start without one.
    pub enroll_token: Option<String>,
    /// A node id fixed by configuration (V1: `VAULTMESH_NODE_ID`) rather than the state file.
    pub node_id: Option<String>,
    pub allow_insecure_http: bool,
    /// The env file that was read, if any.
    pub config_file: Option<PathBuf>,
    pub log_filter: Option<String>,
}

/// Where a setting came from, for error messages.
#[derive(Debug)]
struct Found {
    value: String,
    source: String,
}

/// Settings given on the command line, by their environment-variable names.
pub type Flags = HashMap<&'static str, String>;

struct Layers<'a> {
    flags: &'a Flags,
    env: &'a dyn Fn(&str) -> Option<String>,
    file: Vec<(String, String)>,
    file_name: String,
    saved: Vec<(String, String)>,
    saved_name: String,
}

impl Layers<'_> {
    /// The highest-priority value of `key` or its V1 alias.
    fn get(&self, key: &'static str, alias: Option<&'static str>) -> Option<Found> {
        let names = [Some(key), alias];
        let in_list = |list: &[(String, String)], source: &str| {
            names.iter().flatten().find_map(|name| {
                let hit = list.iter().rev().find(|(k, _)| k == name);
                hit.map(|(_, v)| Found { value: v.clone(), source: format!("{name} in {source}") })
            })
        };
        if let Some(value) = self.flags.get(key) {
            return Some(Found { value: value.clone(), source: "the command line".into() });
        }
        let from_env = names.iter().flatten().find_map(|name| {
            (self.env)(name).map(|value| Found { value, source: format!("{name} in the environment") })
        });
        from_env.or_else(|| in_list(&self.file, &self.file_name)).or_else(|| in_list(&self.saved, &self.saved_name))
    }

    fn string(&self, key: &'static str, alias: Option<&'static str>) -> Option<String> {
        self.get(key, alias).map(|f| f.value).filter(|v| !v.is_empty())
    }

    fn list(&self, key: &'static str) -> Option<Vec<String>> {
        let found = self.get(key, None)?;
        Some(found.value.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
    }
}

/// Loads the configuration. `env` looks up process environment variables.
pub fn load(flags: &Flags, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
    let (explicit, named_by) = match flags.get("HEARTH_CONFIG") {
        Some(path) => (Some(path.clone()), "--config"),
        None => (env("HEARTH_CONFIG"), "HEARTH_CONFIG"),
    };
    let (file, config_file) = match explicit {
        Some(path) => match read_env_file(Path::new(&path))? {
            Some(pairs) => (pairs, Some(PathBuf::from(path))),
            None => return Err(format!("the config file {path} does not exist; create it or leave out {named_by}")),
        },
        None => {
            let mut found = (Vec::new(), None);
            for path in [DEFAULT_CONFIG, V1_CONFIG] {
                if let Some(pairs) = read_env_file(Path::new(path))? {
                    found = (pairs, Some(PathBuf::from(path)));
                    break;
                }
            }
            found
        }
    };
    let warnings = unknown_names(&file, config_file.as_deref());
    let mut layers = Layers {
        flags,
        env,
        file,
        file_name: config_file.as_ref().map_or_else(String::new, |p| p.display().to_string()),
        saved: Vec::new(),
        saved_name: String::new(),
    };
    let state_dir = layers.string("HEARTH_STATE_DIR", None).map_or_else(|| default_state_dir(env), PathBuf::from);
    let saved_path = state_dir.join(SAVED_SETTINGS);
    layers.saved = read_env_file(&saved_path)?.unwrap_or_default();
    layers.saved_name = saved_path.display().to_string();

    let interval_secs = match layers.get("HEARTH_INTERVAL_SECS", Some("VAULTMESH_HEARTBEAT_SECS")) {
        None => 30,
        Some(found) => match found.value.trim().parse::<u64>() {
            Ok(secs) if (1..=MAX_INTERVAL_SECS).contains(&secs) => secs,
            _ => {
                return Err(format!(
                    "the interval `{}` (from {}) must be a whole number of seconds from 1 to {}",
                    found.value, found.source, MAX_INTERVAL_SECS
                ))
            }
        },
    };
    let allow_insecure_http = match layers.get("HEARTH_ALLOW_INSECURE_HTTP", None) {
        None => false,
        Some(found) => match found.value.trim() {
            "1" | "true" | "yes" => true,
            "0" | "false" | "no" | "" => false,
            other => return Err(format!("`{other}` (from {}) should be true or false", found.source)),
        },
    };
    let node_id = match layers.get("HEARTH_NODE_ID", Some("VAULTMESH_NODE_ID")).filter(|f| !f.value.is_empty()) {
        None => None,
        Some(found) => Some(hearth_wire::canonical_node_id(found.value.trim()).ok_or_else(|| {
            format!(
                "the node id `{}` (from {}) is not a UUID: give one such as `uuidgen` prints, or the 32 hex digits of /etc/machine-id",
                found.value, found.source
            )
        })?),
    };
    let given_services = layers.list("HEARTH_CHECK_SERVICES");
    let mut check_units = Vec::new();
    for spec in layers.list("HEARTH_CHECK_UNITS").unwrap_or_default() {
        let source = layers.get("HEARTH_CHECK_UNITS", None).map(|f| f.source).unwrap_or_default();
        check_units
            .push(crate::units::parse_spec(&spec).map_err(|e| format!("HEARTH_CHECK_UNITS (from {source}): {e}"))?);
    }
    Ok(Config {
        warnings,
        check_units,
        check_services_defaulted: given_services.is_none(),
        collector_url: layers
            .string("HEARTH_COLLECTOR_URL", Some("VAULTMESH_CC_URL"))
            .unwrap_or_else(|| DEFAULT_COLLECTOR.into()),
        name: layers.string("HEARTH_NAME", Some("BEACON_DEVICE_NAME")),
        enroll_token: layers.string("HEARTH_TOKEN", Some("BEACON_API_KEY")).map(|t| t.trim().to_owned()),
        state_dir,
        interval_secs,
        os_profile: layers.string("HEARTH_OS_PROFILE", Some("VAULTMESH_OS_PROFILE")),
        root: layers.string("HEARTH_ROOT", Some("VAULTMESH_ROOT")).unwrap_or_else(|| "/".into()),
        check_services: given_services.unwrap_or_else(|| vec![crate::checks::CLOUDFLARED.into()]),
        check_paths: layers.list("HEARTH_CHECK_PATHS").unwrap_or_default(),
        tags: layers.list("HEARTH_TAGS").unwrap_or_default(),
        node_id,
        allow_insecure_http,
        config_file,
        log_filter: layers.string("RUST_LOG", None),
    })
}

/// Every name the agent reads, with the V1 and Beacon ones it takes for them.
const NAMES: &[&str] = &[
    "HEARTH_ALLOW_INSECURE_HTTP",
    "HEARTH_CHECK_PATHS",
    "HEARTH_CHECK_SERVICES",
    "HEARTH_CHECK_UNITS",
    "HEARTH_COLLECTOR_URL",
    "HEARTH_INTERVAL_SECS",
    "HEARTH_NAME",
    "HEARTH_NODE_ID",
    "HEARTH_OS_PROFILE",
    "HEARTH_ROOT",
    "HEARTH_STATE_DIR",
    "HEARTH_TAGS",
    "HEARTH_TOKEN",
    "VAULTMESH_CC_URL",
    "VAULTMESH_HEARTBEAT_SECS",
    "VAULTMESH_NODE_ID",
    "VAULTMESH_OS_PROFILE",
    "VAULTMESH_ROOT",
    "BEACON_API_KEY",
    "BEACON_DEVICE_NAME",
];

/// The agent's own kinds of names (`HEARTH_`, `VAULTMESH_`, `BEACON_`) in the config file
/// that it does not read: a misspelt `HEARTH_INTERVL_SECS` would otherwise be dropped
/// without a word. Other names (`RUST_LOG`, proxies) are the environment's.
fn unknown_names(file: &[(String, String)], path: Option<&Path>) -> Vec<String> {
    let ours = |name: &str| ["HEARTH_", "VAULTMESH_", "BEACON_"].iter().any(|prefix| name.starts_with(prefix));
    let path = path.map_or_else(String::new, |p| p.display().to_string());
    file.iter()
        .map(|(name, _)| name)
        .filter(|name| ours(name) && !NAMES.contains(&name.as_str()))
        .map(|name| {
            format!("{path}: `{name}` is not a setting of the agent's, and is ignored (see hearth-agent --help)")
        })
        .collect()
}

/// Reads an env file; `Ok(None)` if it does not exist.
pub fn read_env_file(path: &Path) -> Result<Option<Vec<(String, String)>>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => envfile::parse(&text).map(Some).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn default_state_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    match env("HOME") {
        Some(home) if !root => Path::new(&home).join(".hearth"),
        _ => PathBuf::from("/var/lib/hearth-agent"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_with(flags: &[(&'static str, &str)], env: &[(&str, &str)], file: Option<&str>) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let mut flags: Flags = flags.iter().map(|(k, v)| (*k, v.to_string())).collect();
        flags.entry("HEARTH_STATE_DIR").or_insert_with(|| dir.path().join("state").display().to_string());
        let path = dir.path().join("agent.env");
        std::fs::write(&path, file.unwrap_or("")).unwrap();
        flags.entry("HEARTH_CONFIG").or_insert_with(|| path.display().to_string());
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        load(&flags, &|k| env.get(k).cloned())
    }

    #[test]
    fn a_misspelt_name_in_the_config_file_is_said() {
        let c = load_with(&[], &[], Some("HEARTH_INTERVL_SECS=300\nRUST_LOG=info\nHEARTH_NAME=x\nVAULTMESH_ROOT=/srv"))
            .unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("`HEARTH_INTERVL_SECS` is not a setting"), "{:?}", c.warnings);
    }

    #[test]
    fn flags_beat_environment_beat_file() {
        let file = Some("HEARTH_COLLECTOR_URL=https://file\nHEARTH_NAME=from-file\nHEARTH_INTERVAL_SECS=10");
        let c = load_with(
            &[("HEARTH_COLLECTOR_URL", "https://flag")],
            &[("HEARTH_COLLECTOR_URL", "https://env"), ("HEARTH_NAME", "from-env")],
            file,
        )
        .unwrap();
        assert_eq!(c.collector_url, "https://flag");
        assert_eq!(c.name.as_deref(), Some("from-env"));
        assert_eq!(c.interval_secs, 10);
    }

    #[test]
    fn defaults() {
        let c = load_with(&[], &[], None).unwrap();
        assert_eq!(c.collector_url, DEFAULT_COLLECTOR);
        assert_eq!(c.interval_secs, 30);
        assert_eq!(c.root, "/");
        assert_eq!(c.check_services, ["cloudflared"]);
        assert!(c.check_services_defaulted);
        assert!(c.check_paths.is_empty() && !c.allow_insecure_http);
    }

    #[test]
    fn v1_names_work_and_hearth_names_win() {
        let v1 = "VAULTMESH_NODE_ID=550E8400-E29B-41D4-A716-446655440000\nVAULTMESH_CC_URL=https://cc.example\n\
                  VAULTMESH_OS_PROFILE=DebianVault\nVAULTMESH_ROOT=/var/lib/vaultmesh\nVAULTMESH_HEARTBEAT_SECS=15\n";
        let c = load_with(&[], &[], Some(v1)).unwrap();
        assert_eq!(c.node_id.as_deref(), Some("550e8400-e29b-41d4-a716-446655440000"));
        assert_eq!(c.collector_url, "https://cc.example");
        // V1 suggests deriving the id from /etc/machine-id: its bare form names the same node.
        let m = load_with(&[], &[], Some("VAULTMESH_NODE_ID=550E8400E29B41D4A716446655440000\n")).unwrap();
        assert_eq!(m.node_id, c.node_id);
        let e = load_with(&[], &[], Some("VAULTMESH_NODE_ID=node-1\n")).unwrap_err();
        assert!(e.contains("`node-1`") && e.contains("machine-id"), "{e}");
        assert_eq!(c.os_profile.as_deref(), Some("DebianVault"));
        assert_eq!(c.root, "/var/lib/vaultmesh");
        assert_eq!(c.interval_secs, 15);
        let c = load_with(&[], &[("VAULTMESH_HEARTBEAT_SECS", "20")], Some("HEARTH_INTERVAL_SECS=5")).unwrap();
        assert_eq!(c.interval_secs, 20, "the environment outranks the file, whatever the name");
        let c = load_with(&[], &[("VAULTMESH_HEARTBEAT_SECS", "20"), ("HEARTH_INTERVAL_SECS", "7")], None).unwrap();
        assert_eq!(c.interval_secs, 7);
    }

    #[test]
    fn errors_name_the_source() {
        let err = load_with(&[], &[], Some("HEARTH_INTERVAL_SECS=soon")).unwrap_err();
        assert!(err.contains("HEARTH_INTERVAL_SECS in") && err.contains("agent.env"), "{err}");
        let err = load_with(&[], &[("VAULTMESH_NODE_ID", "node-1")], None).unwrap_err();
        assert!(err.contains("VAULTMESH_NODE_ID in the environment"), "{err}");
        let err = load_with(&[], &[], Some("A=1\nbroken line")).unwrap_err();
        assert!(err.contains("agent.env: line 2"), "{err}");
        let err = load_with(&[("HEARTH_CONFIG", "/nonexistent/agent.env")], &[], None).unwrap_err();
        assert!(err.contains("/nonexistent/agent.env does not exist"), "{err}");
    }

    #[test]
    fn lists_split_on_commas_and_spaces() {
        let c = load_with(
            &[],
            &[("HEARTH_CHECK_SERVICES", "cloudflared, nginx sshd"), ("HEARTH_CHECK_SERVICES_X", "")],
            None,
        )
        .unwrap();
        assert_eq!(c.check_services, ["cloudflared", "nginx", "sshd"]);
        assert!(!c.check_services_defaulted, "a list the operator gave is never a default");
        let c = load_with(&[], &[("HEARTH_CHECK_SERVICES", "")], None).unwrap();
        assert!(c.check_services.is_empty(), "an empty value turns the default off");
        let c =
            load_with(&[], &[("HEARTH_CHECK_UNITS", "restic-backup.service@26h, certbot.service@8d")], None).unwrap();
        let units: Vec<_> = c.check_units.iter().map(|u| (u.unit.as_str(), u.max_age_secs)).collect();
        assert_eq!(units, [("restic-backup.service", 93_600), ("certbot.service", 691_200)]);
        let err = load_with(&[], &[("HEARTH_CHECK_UNITS", "certbot.service")], None).unwrap_err();
        assert!(err.contains("HEARTH_CHECK_UNITS") && err.contains("UNIT@AGE"), "{err}");
    }
}
