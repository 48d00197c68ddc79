//! What each command does: `serve`, and the administration commands that share its data directory.

use crate::cli::{Command, Serve, HELP};
use crate::http::{self, now_ms, ServeConfig};
use crate::model::{ApiKeyRecord, EnrollTokenRecord, NodeRecord};
use crate::secret::{self, API_KEY_PREFIX, ENROLL_PREFIX};
use crate::store::{Store, StoreConfig, DEFAULT_MAX_MAP};
use hearth_wire::format_rfc3339;
use std::io::Write;
use std::net::{TcpListener, ToSocketAddrs};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

/// A failure, worded for the operator: what failed and, where it helps, what to do.
pub type Failure = String;

pub fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Help => print!("{HELP}"),
        Command::Version => println!("hearth-collector {}", env!("CARGO_PKG_VERSION")),
        Command::Serve(serve) => return run_serve(&serve),
        Command::TokenCreate {
            data_dir,
            ttl,
            name,
            tags,
            node,
        } => {
            let store = open_store(&data_dir, None)?;
            let token = secret::new_secret(ENROLL_PREFIX)
                .map_err(|e| format!("cannot get random bytes: {e}"))?;
            let now = now_ms();
            let record = EnrollTokenRecord {
                id: secret::new_id().map_err(|e| format!("cannot get random bytes: {e}"))?,
                name,
                tags,
                node_id: node.clone(),
                created_at: now,
                expires_at: now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
                used_at: None,
                used_by: None,
            };
            store
                .write(|txn| {
                    if let Some(id) = &node {
                        if txn.node(id)?.is_none() {
                            return Ok(Err(format!(
                                "no node has the id {id}; see `hearth-collector nodes`"
                            )));
                        }
                    }
                    txn.put_enroll_token(&secret::hash(&token), &record).map(Ok)
                })
                .map_err(|e| e.to_string())??;
            println!("{token}");
            eprintln!(
                "enrolment token {} is valid until {}; on the node run: hearth-agent enroll --token <token> --collector <URL>",
                record.id,
                format_rfc3339(record.expires_at)
            );
        }
        Command::ApiKeyCreate { data_dir, name } => {
            let store = open_store(&data_dir, None)?;
            let key = secret::new_secret(API_KEY_PREFIX)
                .map_err(|e| format!("cannot get random bytes: {e}"))?;
            let id = secret::new_id().map_err(|e| format!("cannot get random bytes: {e}"))?;
            let record = ApiKeyRecord {
                id,
                name,
                created_at: now_ms(),
            };
            store
                .write(|txn| txn.put_api_key(&secret::hash(&key), &record))
                .map_err(|e| e.to_string())?;
            println!("{key}");
            eprintln!("API key {} created; it is shown only now", record.id);
        }
        Command::Nodes { data_dir, json } => {
            let store = open_store(&data_dir, None)?;
            let nodes = store.read(|txn| txn.nodes()).map_err(|e| e.to_string())?;
            let mut out = std::io::stdout().lock();
            let printed = if json {
                let now = now_ms();
                let views: Vec<_> = nodes.iter().map(|n| n.view(now)).collect();
                writeln!(out, "{}", miniserde::json::to_string(&views))
            } else {
                out.write_all(node_table(&nodes, now_ms()).as_bytes())
            };
            // A closed pipe (`| head`) is not a failure.
            if let Err(e) = printed {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(format!("cannot write to stdout: {e}"));
                }
            }
        }
    }
    Ok(())
}

fn run_serve(serve: &Serve) -> Result<(), Failure> {
    let store = open_store(&serve.data_dir, serve.max_db_mb)?;
    let addr = serve
        .listen
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            format!(
                "--listen {} is not an address; write it like 127.0.0.1:8088",
                serve.listen
            )
        })?;
    let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    println!("listening on http://{bound}");
    let _ = std::io::stdout().flush();
    log::info!(
        "serving {} ({}anonymous heartbeats)",
        store.path().display(),
        if serve.allow_anonymous {
            "accepting "
        } else {
            "refusing "
        }
    );
    let config = ServeConfig {
        allow_anonymous: serve.allow_anonymous,
        max_batch: serve.max_batch,
        io_timeout: serve.io_timeout,
    };
    http::serve(listener, &store, &config).map_err(|e| format!("the server stopped: {e}"))
}

fn open_store(dir: &Path, max_db_mb: Option<usize>) -> Result<Store, Failure> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
    let max_map = max_db_mb.map_or(DEFAULT_MAX_MAP, |mb| mb.saturating_mul(1 << 20));
    Store::open(&StoreConfig::new(dir, max_map)).map_err(|e| {
        format!(
            "cannot open the store in {}: {e} (is the directory writable by this user?)",
            dir.display()
        )
    })
}

/// The node table for a terminal.
pub fn node_table(nodes: &[NodeRecord], now: i64) -> String {
    let mut rows = vec![[
        "NAME",
        "STATUS",
        "LAST SEEN",
        "SEQ",
        "HOSTNAME",
        "ARCH",
        "VERSION",
        "NODE ID",
    ]
    .map(String::from)];
    for node in nodes {
        let view = node.view(now);
        let last_seen = node
            .last_seen
            .map_or_else(|| "never".to_owned(), |seen| ago(now - seen));
        rows.push([
            view.name,
            view.status.to_owned(),
            last_seen,
            view.seq.map_or_else(|| "-".into(), |s| s.to_string()),
            view.hostname,
            view.arch.unwrap_or_else(|| "-".into()),
            view.agent_version.unwrap_or_else(|| "-".into()),
            view.node_id,
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// "12s ago", "5m ago", "3h ago", "2d ago".
fn ago(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86_400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        for (ms, text) in [
            (0, "0s ago"),
            (59_999, "59s ago"),
            (60_000, "1m ago"),
            (7_200_000, "2h ago"),
            (-5, "0s ago"),
        ] {
            assert_eq!(ago(ms), text);
        }
    }
}
