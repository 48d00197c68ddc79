//! What a browser or a new host fetches: the dashboard (embedded in the binary, no build
//! step), the install script (at `/install.sh`, and at restic-manager's `/install/install.sh`),
//! and agent binaries from `--agent-dir`.

use super::{query_param, ApiError, Context, Handled, Reply, Request};
use sha2::{Digest, Sha256};

const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const STYLE_CSS: &str = include_str!("../../web/style.css");
const INSTALL_SH: &str = include_str!("../../web/install.sh");

/// Everything the dashboard loads comes from here: no inline script, no other origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The machines agents are built for, as `uname -m` names them (the layout `cargo xtask dist` writes).
pub const ARCHES: [&str; 5] = ["x86_64", "aarch64", "armv7l", "armv6l", "riscv64"];

pub(super) fn asset(path: &str) -> Handled {
    let (content_type, body) = match path {
        "/app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "/style.css" => ("text/css; charset=utf-8", STYLE_CSS),
        _ => ("text/html; charset=utf-8", INDEX_HTML),
    };
    Ok(Reply::bytes(200, content_type, body.as_bytes().to_vec())
        .with_header("Content-Security-Policy", CSP)
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Referrer-Policy", "no-referrer"))
}

pub(super) fn install_script() -> Reply {
    Reply::bytes(200, "text/x-shellscript; charset=utf-8", INSTALL_SH.as_bytes().to_vec())
}

/// `GET /agent/binary?os=linux&arch=…`, or with `checksum` its `.sha256`.
pub(super) fn agent_binary(req: &Request, ctx: &Context, checksum: bool) -> Handled {
    let os = query_param(&req.query, "os").unwrap_or_default();
    // restic-manager's installer says amd64 and arm64, as Go does.
    let arch = match query_param(&req.query, "arch").unwrap_or_default().as_str() {
        "amd64" => "x86_64".to_owned(),
        "arm64" => "aarch64".to_owned(),
        other => other.to_owned(),
    };
    if os != "linux" || !ARCHES.contains(&arch.as_str()) {
        let message = format!(
            "there is no agent for os={os:?} arch={arch:?}; agents exist for os=linux and arch={} \
             (amd64 and arm64 also name the first two)",
            ARCHES.join(", ")
        );
        return Err(ApiError::new(400, "unsupported_platform", message).into());
    }
    let Some(dir) = ctx.agent_dir else {
        let message = "this collector serves no agent binaries; start it with --agent-dir DIR \
                       (the `agent` directory that `cargo xtask dist` writes)";
        return Err(ApiError::new(404, "binary_missing", message).into());
    };
    let path = dir.join(&os).join(&arch).join("hearth-agent");
    let bytes = std::fs::read(&path).map_err(|e| {
        let message = format!("the collector has no agent binary for {os}/{arch}: cannot read {}: {e}", path.display());
        if e.kind() == std::io::ErrorKind::NotFound {
            ApiError::new(404, "binary_missing", message)
        } else {
            log::error!("{message}");
            ApiError::new(500, "internal", message)
        }
    })?;
    if checksum {
        let line = format!("{}  hearth-agent\n", crate::secret::hex(&Sha256::digest(&bytes)));
        return Ok(Reply::bytes(200, "text/plain; charset=utf-8", line.into_bytes()));
    }
    Ok(Reply::bytes(200, "application/octet-stream", bytes)
        .with_header("Content-Disposition", "attachment; filename=\"hearth-agent\""))
}
