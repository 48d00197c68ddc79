//! `cargo xtask deb`: a Debian package per architecture, from the `dist` builds.
//!
//! Each `hearth_VERSION_ARCH.deb` holds both binaries in /usr/bin, the systemd units (pointed
//! at /usr/bin), and an example /etc/hearth/agent.env that dpkg keeps on upgrade (a conffile).
//! Services are not enabled on install: the operator enables what the host runs.

use crate::{dist, util};
use std::path::Path;
use std::process::Command;

/// Debian architecture → the target built for it. `armhf` carries the ARMv6 build, which
/// also runs on ARMv7 (Raspberry Pi OS's armhf must run on a Pi Zero and Pi 1 too).
const ARCHES: &[(&str, &str)] = &[
    ("amd64", "x86_64-unknown-linux-musl"),
    ("arm64", "aarch64-unknown-linux-musl"),
    ("armhf", "arm-unknown-linux-musleabihf"),
    ("riscv64", "riscv64gc-unknown-linux-musl"),
];

const EXAMPLE_ENV: &str = "\
# Settings for hearth-agent (systemd EnvironmentFile= syntax). Kept on upgrade.
# See /usr/share/doc/hearth/README.md for every setting.
#HEARTH_COLLECTOR_URL=https://hearth.example.com
#HEARTH_NAME=garage-pi
#HEARTH_INTERVAL_SECS=30
#HEARTH_CHECK_SERVICES=cloudflared
#HEARTH_CHECK_PATHS=/srv/data
#HEARTH_TAGS=garage
";

pub fn run(args: &[&str]) -> Result<(), String> {
    let chosen: Vec<&(&str, &str)> = match args {
        [] => ARCHES.iter().collect(),
        ["--arch", arch] => ARCHES.iter().filter(|(a, _)| a == arch).collect(),
        _ => return Err("usage: cargo xtask deb [--arch amd64|arm64|armhf|riscv64]".into()),
    };
    if chosen.is_empty() {
        return Err(format!("deb knows {}", ARCHES.iter().map(|a| a.0).collect::<Vec<_>>().join(", ")));
    }
    let out = util::root().join("target/deb");
    for (arch, target) in chosen {
        let [agent, collector] = dist::build(target)?;
        let deb = package(&out, arch, &agent, &collector)?;
        println!("{}", deb.display());
    }
    Ok(())
}

fn package(out: &Path, arch: &str, agent: &Path, collector: &Path) -> Result<std::path::PathBuf, String> {
    let version = env!("CARGO_PKG_VERSION");
    let root = util::root();
    let stage = out.join(format!("hearth_{version}_{arch}"));
    let _ = std::fs::remove_dir_all(&stage);
    let write = |relative: &str, contents: &[u8], mode: u32| -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let path = stage.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::write(&path, contents).map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())
    };
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    write("usr/bin/hearth-agent", &read(agent)?, 0o755)?;
    write("usr/bin/hearth-collector", &read(collector)?, 0o755)?;
    for unit in ["hearth-agent.service", "hearth-collector.service", "hearth-collector.socket"] {
        let text = String::from_utf8(read(&root.join("systemd").join(unit))?).map_err(|e| e.to_string())?;
        write(&format!("lib/systemd/system/{unit}"), text.replace("/usr/local/bin/", "/usr/bin/").as_bytes(), 0o644)?;
    }
    write("etc/hearth/agent.env", EXAMPLE_ENV.as_bytes(), 0o600)?;
    write("usr/share/doc/hearth/README.md", &read(&root.join("README.md"))?, 0o644)?;
    let installed_kib = (read(agent)?.len() + read(collector)?.len()) / 1024 + 64;
    let control = format!(
        "Package: hearth\nVersion: {version}\nArchitecture: {arch}\nMaintainer: Hearth developers <hearth@example.invalid>\n\
         Installed-Size: {installed_kib}\nSection: admin\nPriority: optional\n\
         Description: heartbeat agent and collector for homelabs and small fleets\n \
         hearth-agent sends a small heartbeat every interval; hearth-collector knows which\n \
         nodes are alive and alerts when one goes silent. Static binaries, no OpenSSL.\n"
    );
    write("DEBIAN/control", control.as_bytes(), 0o644)?;
    write("DEBIAN/conffiles", b"/etc/hearth/agent.env\n", 0o644)?;
    let deb = out.join(format!("hearth_{version}_{arch}.deb"));
    util::output(Command::new("dpkg-deb").args(["--build", "--root-owner-group"]).arg(&stage).arg(&deb))?;
    Ok(deb)
}
