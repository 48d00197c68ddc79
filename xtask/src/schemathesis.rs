//! `cargo xtask schemathesis`: checks a running collector against docs/openapi.yaml.
//!
//! schemathesis (PyPI, installed into target/schemathesis-venv when missing) sends
//! generated requests to every operation, with an admin's API key, and fails on any
//! 5xx, any status the file does not list, and any answer whose content type or body
//! breaks the file.

use crate::util::{self, Collector};
use std::process::Command;

const SCHEMATHESIS: &str = "schemathesis>=4.32,<5";

pub fn run(args: &[&str]) -> Result<(), String> {
    let examples = match args {
        [] => "50",
        ["--max-examples", n] => n,
        _ => return Err("usage: cargo xtask schemathesis [--max-examples N]".into()),
    };
    let root = util::root();
    let venv = root.join("target/schemathesis-venv");
    let st = venv.join("bin/st");
    if !st.exists() {
        println!("== installing {SCHEMATHESIS} into {}", venv.display());
        util::output(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            .map_err(|e| format!("{e}\n(Debian: apt-get install python3-venv)"))?;
        util::output(Command::new(venv.join("bin/pip")).args(["install", "--quiet", SCHEMATHESIS]))?;
    }
    util::build(&[])?;
    let data = root.join("target/schemathesis");
    let _ = std::fs::remove_dir_all(&data);
    let bin = root.join("target/debug/hearth-collector");
    util::admin(&bin, &data, &["user", "add", "schemathesis", "--role", "admin"], "schemathesis-password\n")?;
    let key = util::admin(&bin, &data, &["apikey", "create", "--user", "schemathesis"], "")?;
    let collector = Collector::start(&bin, &data, &[])?;
    let status = Command::new(&st)
        .current_dir(&root)
        .args(["run", "docs/openapi.yaml", "--url", &collector.url, "--max-examples", examples])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["-H", &format!("Authorization: Bearer {}", key.trim())])
        .status()
        .map_err(|e| format!("cannot run schemathesis: {e}"))?;
    if !status.success() {
        return Err(format!("schemathesis found answers that break docs/openapi.yaml ({status})"));
    }
    Ok(())
}
