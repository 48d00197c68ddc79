//! The systemd units: `systemd-analyze verify` accepts them, and their exposure stays low.

use crate::support::collector_bin;
use std::path::Path;
use std::process::Command;

/// The units in `systemd/SUBDIR` as installed, with the binaries' path pointed at executables
/// that exist here (system units name /usr/local/bin; user units %h/.local/bin, and `dir` is
/// the home directory they are checked with).
fn installable_units(dir: &Path, subdir: &str) -> Vec<std::path::PathBuf> {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd").join(subdir);
    let bin = dir.join(".local/bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["hearth-collector", "hearth-agent"] {
        std::fs::copy(collector_bin(), bin.join(name)).unwrap(); // verify only needs an executable
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(units).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap().replace("/usr/local/bin/", &format!("{}/", bin.display()));
        let copy = dir.join(path.file_name().unwrap());
        std::fs::write(&copy, text).unwrap();
        out.push(copy);
    }
    out.sort();
    out
}

fn have_systemd_analyze() -> bool {
    let found = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "systemd-analyze is needed in CI (Debian's systemd package)");
        eprintln!("systemd-analyze not found; skipping the unit checks");
    }
    found
}

#[test]
fn the_units_verify_and_their_exposure_stays_low() {
    if !have_systemd_analyze() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let units = installable_units(temp.path(), "");
    assert_eq!(units.len(), 3, "{units:?}");
    let out = Command::new("systemd-analyze").arg("verify").args(&units).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");

    for unit in units.iter().filter(|u| u.extension().is_some_and(|e| e == "service")) {
        let out = Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(unit).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let score: f64 = text
            .lines()
            .find_map(|l| l.split("exposure level for ").nth(1))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no exposure score for {}:\n{text}", unit.display()));
        assert!(score <= 2.5, "{} exposure rose to {score}:\n{text}", unit.display());
    }
}

#[test]
fn the_user_units_verify() {
    if !have_systemd_analyze() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let units = installable_units(home.path(), "user");
    assert_eq!(units.len(), 2, "{units:?}");
    let runtime = home.path().join("run"); // a user manager needs XDG_RUNTIME_DIR, even offline
    std::fs::create_dir(&runtime).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["--user", "verify"])
        .args(&units)
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze --user verify:\n{said}");
}
