//! The alert channels: reading their file, and `alert test`.

use super::{now_ms, open_existing_store, Failure};
use crate::alerts::config::{self as alert_config, Channels};
use crate::alerts::{channel, worker};
use crate::model::{AlertRecord, EventKind};
use crate::store::{setting, Store};
use std::path::{Path, PathBuf};

/// Reads the channels file; without one named, /etc/hearth/alerts.conf if it exists.
/// Also returns the file read, as an absolute path.
pub(super) fn load_channels(path: Option<&Path>) -> Result<(Channels, Option<PathBuf>), Failure> {
    let (path, explicit) = match path {
        Some(path) => (path, true),
        None => (Path::new(DEFAULT_ALERTS), false),
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            log::info!("no alert channels ({} does not exist): events are recorded, nobody is told", path.display());
            return Ok((Channels::default(), None));
        }
        Err(e) => {
            return Err(Failure::Config(format!(
                "cannot read the alert channels file {}: {e} (name another with --alerts FILE or HEARTH_ALERTS)",
                path.display()
            )))
        }
    };
    let channels = alert_config::parse(&text).map_err(|e| Failure::Config(format!("{}: {e}", path.display())))?;
    log::info!("{} alert channel(s) from {}", channels.list.len(), path.display());
    Ok((channels, Some(std::path::absolute(path).unwrap_or_else(|_| path.to_owned()))))
}

const DEFAULT_ALERTS: &str = "/etc/hearth/alerts.conf";

/// The channels a command tells: those of the file named (`--alerts`, `HEARTH_ALERTS`), else
/// of the one the last `serve` on `store` (in `data_dir`) read, else of the default file,
/// if it exists.
pub(super) fn served_channels(
    store: &Store,
    data_dir: &Path,
    path: Option<&Path>,
) -> Result<(Channels, Option<PathBuf>), Failure> {
    let served: Option<PathBuf> = match path {
        Some(_) => None,
        None => store
            .read(|txn| txn.setting::<String>(setting::CHANNELS_FILE))
            .map_err(|e| Failure::store(data_dir, e))?
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
    };
    load_channels(path.or(served.as_deref()))
}

/// Sends a test notification to each channel and prints what it answered. The channels
/// file is the one named (`--alerts`, `HEARTH_ALERTS`), else the one the last `serve` on
/// `data_dir` read, else the default.
pub(super) fn alert_test(data_dir: &Path, path: Option<&Path>, only: Option<&str>) -> Result<(), Failure> {
    let (channels, read) = match path {
        None if Store::exists(data_dir) => served_channels(&open_existing_store(data_dir)?, data_dir, None)?,
        _ => load_channels(path)?,
    };
    let chosen: Vec<_> = channels.list.iter().filter(|c| only.is_none_or(|name| c.name == name)).collect();
    let file = read.map_or_else(|| format!("{DEFAULT_ALERTS} does not exist"), |p| p.display().to_string());
    if chosen.is_empty() {
        return Err(Failure::Config(match only {
            Some(name) => format!("no channel is named `{name}` in {file}"),
            None => format!(
                "no channels are configured ({file}); name the channels file with --alerts FILE or \
                 HEARTH_ALERTS, and see the README's \"Alerts\" section"
            ),
        }));
    }
    eprintln!("channels from {file}");
    let alert = AlertRecord {
        id: 0,
        kind: EventKind::Test,
        node_id: "00000000-0000-4000-8000-000000000000".into(),
        name: "hearth-collector".into(),
        hostname: "hearth-collector".into(),
        tags: Vec::new(),
        check: None,
        checks: None,
        detail: "this is a test notification from `hearth-collector alert test`".into(),
        at: now_ms(),
        down_since: None,
        deliveries: Vec::new(),
    };
    let mut failed = 0;
    for c in chosen {
        match worker::send(&channel::build(c, &alert, alert.at)) {
            Ok(answer) => println!("{}: {answer}", c.name),
            Err(error) => {
                println!("{}: FAILED: {error}", c.name);
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(Failure::Failed(format!("{failed} channel(s) did not accept the test notification")));
    }
    Ok(())
}
