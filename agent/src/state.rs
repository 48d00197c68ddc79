//! The state directory: the node id, the agent token, and the settings `init` and
//! `enroll` remember. Files are 0600 in a 0700 directory, and written atomically.

use crate::config::SAVED_SETTINGS;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const NODE_ID: &str = "node_id";
const TOKEN: &str = "token";
/// Present after `logout`: the agent stays quiet until it enrols again.
const LOGGED_OUT: &str = "logged-out";
/// The most any file here may hold (`settings.env` is the largest, at a few hundred bytes).
const MAX_FILE_BYTES: u64 = 16 * 1024;

#[derive(Debug, Clone)]
pub struct State {
    dir: PathBuf,
}

impl State {
    pub fn new(dir: impl Into<PathBuf>) -> State {
        State { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn create_dir(&self) -> Result<(), String> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| format!("cannot create the state directory {}: {e}", self.dir.display()))
    }

    /// The stored node id, creating one (UUID v4 from getrandom) if there is none.
    pub fn node_id_or_create(&self) -> Result<(String, bool), String> {
        if let Some(id) = self.node_id()? {
            return Ok((id, false));
        }
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| format!("cannot get random bytes for a node id: {e}"))?;
        let id = hearth_wire::uuid_v4_from_bytes(bytes);
        self.create_dir()?;
        self.write(NODE_ID, &format!("{id}\n"))?;
        Ok((id, true))
    }

    pub fn node_id(&self) -> Result<Option<String>, String> {
        let Some(text) = self.read(NODE_ID)? else {
            return Ok(None);
        };
        let id = text.trim().to_ascii_lowercase();
        // A UUID of any version: the agent makes v4 ones, but one configured (V1's
        // VAULTMESH_NODE_ID, perhaps from /etc/machine-id) is saved here at enrolment.
        if hearth_wire::is_uuid(&id) {
            Ok(Some(id))
        } else {
            Err(format!("{} does not hold a UUID; delete it to make a new node id", self.path(NODE_ID).display()))
        }
    }

    /// Forgets the node id, so that the next `node_id_or_create` makes a new one.
    pub fn forget_node_id(&self) -> Result<(), String> {
        self.remove(NODE_ID)
    }

    pub fn set_node_id(&self, id: &str) -> Result<(), String> {
        self.write(NODE_ID, &format!("{id}\n"))
    }

    pub fn token(&self) -> Result<Option<String>, String> {
        let token = self.read(TOKEN)?.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        match token {
            Some(t) if t.len() > 1024 || !t.bytes().all(|c| c.is_ascii_graphic()) => Err(format!(
                "{} does not hold an agent token; enrol again (`hearth-agent enroll --token TOKEN`)",
                self.path(TOKEN).display()
            )),
            token => Ok(token),
        }
    }

    /// Stores the agent token and clears a previous `logout`.
    pub fn set_token(&self, token: &str) -> Result<(), String> {
        self.write(TOKEN, &format!("{token}\n"))?;
        self.remove(LOGGED_OUT)
    }

    /// Forgets the token and stops reporting until the next enrolment.
    pub fn logout(&self) -> Result<(), String> {
        self.remove(TOKEN)?;
        self.create_dir()?;
        self.write(LOGGED_OUT, "run `hearth-agent enroll` to report again\n")
    }

    pub fn logged_out(&self) -> bool {
        self.path(LOGGED_OUT).exists()
    }

    /// Remembers settings (by env name) for later commands, keeping the ones not mentioned.
    pub fn save_settings(&self, settings: &[(&str, &str)]) -> Result<(), String> {
        let path = self.path(SAVED_SETTINGS);
        let mut pairs = crate::config::read_env_file(&path)?.unwrap_or_default();
        for (key, value) in settings {
            pairs.retain(|(k, _)| k != key);
            pairs.push(((*key).to_owned(), (*value).to_owned()));
        }
        let mut text = String::from(
            "# Written by hearth-agent init/enroll. Flags, the environment and the config file take precedence.\n",
        );
        for (key, value) in pairs {
            let quoted = value.replace('\\', "\\\\").replace('"', "\\\"");
            text.push_str(&format!("{key}=\"{quoted}\"\n"));
        }
        self.write(SAVED_SETTINGS, &text)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Reads a small regular file: anything else (a pipe would block the reader, a huge
    /// file would be sent as a header) is an error naming the file.
    fn read(&self, name: &str) -> Result<Option<String>, String> {
        let path = self.path(name);
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
            return Err(format!(
                "{} is not a file of at most {MAX_FILE_BYTES} bytes; delete it (and enrol again if it was the token)",
                path.display()
            ));
        }
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    fn write(&self, name: &str, text: &str) -> Result<(), String> {
        write_private(&self.path(name), text)
    }

    fn remove(&self, name: &str) -> Result<(), String> {
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
        }
    }
}

/// Writes a file readable by its owner only (0600), through a temporary file beside it and a
/// rename, so a crash leaves the old content or the new, never half of either.
pub fn write_private(path: &Path, text: &str) -> Result<(), String> {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.tmp"));
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temp).map_err(fail)?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(fail)?;
    fs::rename(&temp, path).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_private_and_node_ids_stable() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::new(dir.path().join("s"));
        let (id, created) = state.node_id_or_create().unwrap();
        assert!(created && hearth_wire::is_uuid_v4(&id));
        assert_eq!(state.node_id_or_create().unwrap(), (id, false));
        state.set_token("hag_secret").unwrap();
        assert_eq!(state.token().unwrap().as_deref(), Some("hag_secret"));
        for (path, mode) in [("s", 0o700), ("s/node_id", 0o600), ("s/token", 0o600)] {
            let got = fs::metadata(dir.path().join(path)).unwrap().permissions().mode() & 0o777;
            assert_eq!(got, mode, "{path}");
        }
        state.logout().unwrap();
        assert!(state.logged_out() && state.token().unwrap().is_none());
        state.set_token("hag_again").unwrap();
        assert!(!state.logged_out());
    }

    /// What a careless hand leaves in the state directory is an error naming the file,
    /// never a read that blocks (a pipe) or a token no collector could take.
    #[test]
    fn odd_files_are_refused_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::new(dir.path());
        let fifo = std::ffi::CString::new(dir.path().join(TOKEN).to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) on a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert!(state.token().unwrap_err().contains("not a file"));
        fs::remove_file(dir.path().join(TOKEN)).unwrap();
        for garbage in ["x".repeat(20_000), "x".repeat(2_000), "two words".into(), "\u{1b}[2J".into()] {
            fs::write(dir.path().join(TOKEN), &garbage).unwrap();
            assert!(state.token().is_err(), "{garbage:.20}");
        }
        fs::write(dir.path().join(TOKEN), "hag_abc\n").unwrap();
        assert_eq!(state.token().unwrap().as_deref(), Some("hag_abc"));
    }

    #[test]
    fn saved_settings_merge_and_quote() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::new(dir.path());
        state.save_settings(&[("HEARTH_NAME", "a \"quoted\" name"), ("HEARTH_COLLECTOR_URL", "https://x")]).unwrap();
        state.save_settings(&[("HEARTH_COLLECTOR_URL", "https://y")]).unwrap();
        let pairs = crate::config::read_env_file(&dir.path().join(SAVED_SETTINGS)).unwrap().unwrap();
        assert_eq!(
            pairs,
            [
                ("HEARTH_NAME".to_owned(), "a \"quoted\" name".to_owned()),
                ("HEARTH_COLLECTOR_URL".to_owned(), "https://y".to_owned())
            ]
        );
    }
}
