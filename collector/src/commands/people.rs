//! People: dashboard users and the API keys that act as them.

use super::{cli_audit, now_ms, open_existing_store, open_store, random_failed, Failure};
use crate::model::{ApiKeyRecord, Role, UserRecord};
use crate::secret::{self, API_KEY_PREFIX};
use hearth_wire::format_rfc3339;
use std::path::Path;

pub(super) fn user_add(data_dir: &Path, name: &str, role: Role) -> Result<(), Failure> {
    // Into a store not made yet, the password is asked for first: a refused one leaves
    // nothing behind.
    let early = if crate::store::Store::exists(data_dir) { None } else { Some(read_password(name)?) };
    let store = open_store(data_dir, None)?;
    let exists = || Failure::Failed(format!("a user named {name} already exists; see `hearth-collector user list`"));
    if store.read(|txn| txn.user(name)).map_err(|e| Failure::store(data_dir, e))?.is_some() {
        return Err(exists());
    }
    let user = UserRecord {
        password: secret::hash_password(&early.map_or_else(|| read_password(name), Ok)?)?,
        name: name.to_owned(),
        role: role.as_str().into(),
        created_at: now_ms(),
    };
    let added = store
        .write(|txn| {
            if txn.user(name)?.is_some() {
                return Ok(false);
            }
            txn.put_user(&user)?;
            txn.put_audit(cli_audit("user_added", name, format!("role {}", role.as_str())))?;
            Ok(true)
        })
        .map_err(|e| Failure::store(data_dir, e))?;
    if !added {
        return Err(exists());
    }
    println!("user {name} added as {}", role.as_str());
    Ok(())
}

pub(super) fn user_passwd(data_dir: &Path, name: &str) -> Result<(), Failure> {
    let store = open_existing_store(data_dir)?;
    if store.read(|txn| txn.user(name)).map_err(|e| Failure::store(data_dir, e))?.is_none() {
        return Err(no_user(name));
    }
    let password = secret::hash_password(&read_password(name)?)?;
    let ended = store
        .write(|txn| {
            let Some(mut user) = txn.user(name)? else { return Ok(None) };
            user.password.clone_from(&password);
            txn.put_user(&user)?;
            let ended = txn.delete_sessions_of(name)?;
            txn.put_audit(cli_audit("password_changed", name, format!("{ended} session(s) ended")))?;
            Ok(Some(ended))
        })
        .map_err(|e| Failure::store(data_dir, e))?
        .ok_or_else(|| no_user(name))?;
    println!("password of {name} changed; {ended} session(s) ended");
    Ok(())
}

pub(super) fn user_remove(data_dir: &Path, name: &str) -> Result<(), Failure> {
    let store = open_existing_store(data_dir)?;
    let removed = store
        .write(|txn| {
            if txn.user(name)?.is_none() {
                return Ok(false);
            }
            txn.delete_user(name)?;
            txn.put_audit(cli_audit("user_removed", name, "with their sessions and API keys".into()))?;
            Ok(true)
        })
        .map_err(|e| Failure::store(data_dir, e))?;
    if !removed {
        return Err(no_user(name));
    }
    println!("user {name} removed, with their sessions and API keys");
    Ok(())
}

pub(super) fn user_list(data_dir: &Path) -> Result<(), Failure> {
    let store = open_existing_store(data_dir)?;
    let users = store.read(|txn| txn.users()).map_err(|e| Failure::store(data_dir, e))?;
    if users.is_empty() {
        eprintln!("no users yet; add one with `hearth-collector user add NAME --role admin`");
    }
    for user in users {
        println!("{:<24} {:<9} added {}", user.name, user.role().as_str(), format_rfc3339(user.created_at));
    }
    Ok(())
}

pub(super) fn apikey_create(data_dir: &Path, name: Option<String>, user: &str) -> Result<(), Failure> {
    let store = open_existing_store(data_dir)?;
    let key = secret::new_secret(API_KEY_PREFIX).map_err(random_failed)?;
    let id = secret::new_id().map_err(random_failed)?;
    let record = ApiKeyRecord { id, name, user: Some(user.to_owned()), created_at: now_ms() };
    let role = store
        .write(|txn| {
            let Some(found) = txn.user(user)? else { return Ok(None) };
            txn.put_api_key(&secret::hash(&key), &record)?;
            txn.put_audit(cli_audit("apikey_created", user, format!("API key {}", record.id)))?;
            Ok(Some(found.role()))
        })
        .map_err(|e| Failure::store(data_dir, e))?
        .ok_or_else(|| {
            Failure::Failed(format!(
                "no user is named {user}; add one with `hearth-collector user add {user} --role viewer`"
            ))
        })?;
    println!("{key}");
    eprintln!("API key {} acts as {user} ({}); it is shown only now", record.id, role.as_str());
    Ok(())
}

fn no_user(name: &str) -> Failure {
    Failure::Failed(format!("no user is named {name}; see `hearth-collector user list`"))
}

/// A new password: asked for twice on a terminal (without echo), else one line of stdin.
fn read_password(name: &str) -> Result<String, Failure> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = prompt_hidden(&format!("password for {name}: "))?;
        if prompt_hidden("again: ")? != first {
            return Err("the two passwords differ; nothing was changed".into());
        }
        first
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line).map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.chars().count() < 8 || password.len() > 1024 {
        return Err("the password must be 8 to 1024 characters long; nothing was changed".into());
    }
    Ok(password)
}

/// Reads a line from the terminal with echo off.
fn prompt_hidden(prompt: &str) -> Result<String, Failure> {
    use std::io::BufRead;
    use std::os::fd::AsRawFd;
    eprint!("{prompt}");
    let fd = std::io::stdin().as_raw_fd();
    // SAFETY: termios is plain data; tcgetattr fills it for a descriptor that is a terminal.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is stdin, which the caller checked is a terminal; `saved` is a valid termios.
    let have_terminal = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if have_terminal {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: as above, with a termios copied from the terminal's own.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if have_terminal {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    eprintln!();
    read.map_err(|e| format!("cannot read the password: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
