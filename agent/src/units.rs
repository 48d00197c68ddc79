//! Unit-result checks: whether a systemd unit's last run (a backup, a certificate renewal,
//! a scrub, started by a timer) succeeded and finished recently enough.
//!
//! `HEARTH_CHECK_UNITS=restic-backup.service@26h,certbot.service@8d`. The agent runs
//! `systemctl show` (with `TZ=UTC`, so timestamps read the same on every host) and
//! [`judge`] reads its answer: a pure function, tested with faked output.

use crate::checks::{run_with_timeout, SERVICE_TIMEOUT};
use hearth_wire::{format_rfc3339, Check};
use std::process::Command;

/// One unit to watch, and how old its last run may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitCheck {
    pub unit: String,
    pub max_age_secs: u64,
}

/// Reads `name@age` (`restic-backup.service@26h`); the age is `90s`, `30m`, `26h`, `8d` or `2w`.
pub fn parse_spec(text: &str) -> Result<UnitCheck, String> {
    let how = "write it as UNIT@AGE, like restic-backup.service@26h (AGE in s, m, h, d or w)";
    let (unit, age) = text.rsplit_once('@').ok_or_else(|| format!("`{text}` names no age; {how}"))?;
    let unit_ok = |c: char| c.is_ascii_alphanumeric() || "-_.:@\\".contains(c);
    if unit.is_empty() || unit.len() > 256 || !unit.chars().all(unit_ok) {
        return Err(format!("`{unit}` is not a systemd unit name; {how}"));
    }
    let (digits, suffix) = age.split_at(age.find(|c: char| !c.is_ascii_digit()).unwrap_or(age.len()));
    let scale = match suffix {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => 0,
    };
    match digits.parse::<u64>() {
        Ok(n) if n > 0 && scale > 0 => Ok(UnitCheck { unit: unit.to_owned(), max_age_secs: n.saturating_mul(scale) }),
        _ => Err(format!("`{age}` in `{text}` is not an age; {how}")),
    }
}

/// The properties asked of systemd.
pub const PROPERTIES: &str = "Result,ExecMainStatus,ExecMainExitTimestamp,ExecMainStartTimestamp,LoadState";

/// Checks each unit's last run.
pub async fn run(units: &[UnitCheck], systemd: bool) -> Vec<Check> {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let uptime_secs = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split('.').next().and_then(|s| s.parse::<u64>().ok()));
    let mut out = Vec::with_capacity(units.len());
    for check in units {
        let shown = if systemd {
            let mut show = Command::new("systemctl");
            show.env("TZ", "UTC").args(["show", "-p", PROPERTIES, "--", &check.unit]);
            run_with_timeout(show, SERVICE_TIMEOUT).await.map(|(_, stdout)| stdout)
        } else {
            Err("systemd is not running on this host".to_owned())
        };
        out.push(judge(check, shown.as_deref().map_err(String::as_str), now_ms, uptime_secs));
    }
    out
}

/// What `systemctl show` said of a unit.
#[derive(Debug, Default, PartialEq, Eq)]
struct Shown<'a> {
    result: Option<&'a str>,
    status: Option<&'a str>,
    started: Option<&'a str>,
    exited: Option<&'a str>,
    load_state: Option<&'a str>,
}

fn read(output: &str) -> Shown<'_> {
    let mut shown = Shown::default();
    for line in output.lines() {
        let Some((key, value)) = line.split_once('=') else { continue };
        let value = Some(value.trim()).filter(|v| !v.is_empty());
        match key {
            "Result" => shown.result = value,
            "ExecMainStatus" => shown.status = value,
            "ExecMainStartTimestamp" => shown.started = value,
            "ExecMainExitTimestamp" => shown.exited = value,
            "LoadState" => shown.load_state = value,
            _ => {}
        }
    }
    shown
}

/// Unix ms from systemd's timestamp in UTC (`Sun 2026-11-29 03:00:01 UTC`), or `@secs`.
fn timestamp(text: &str) -> Option<i64> {
    if let Some(secs) = text.strip_prefix('@') {
        return secs.parse::<i64>().ok().map(|s| s * 1000);
    }
    let mut words = text.split_whitespace();
    let (_day, date, time, zone) = (words.next()?, words.next()?, words.next()?, words.next()?);
    if zone != "UTC" || words.next().is_some() {
        return None;
    }
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400) + hh * 3600 + mm * 60 + ss) * 1000)
}

/// "15 s", "12 min", "3 h 5 min", "2 d 4 h".
fn duration(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        7200..172_800 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// Judges one unit's last run from `systemctl show`'s output (or why there is none), at
/// `now_ms`, on a host up for `uptime_secs`. A unit the host does not have (or a host
/// without systemd) says so and passes: it is not a failing job.
pub fn judge(check: &UnitCheck, shown: Result<&str, &str>, now_ms: i64, uptime_secs: Option<u64>) -> Check {
    let name = format!("{} last run", check.unit);
    let make = |ok: bool, detail: String| Check { name: name.clone(), ok, detail };
    let output = match shown {
        Ok(output) => output,
        Err(reason) if reason.contains("systemd is not running") => {
            return make(true, format!("{reason}; {} not checked", check.unit));
        }
        Err(reason) => return make(false, format!("cannot ask systemd about {}: {reason}", check.unit)),
    };
    let shown = read(output);
    if shown.load_state == Some("not-found") {
        return make(
            true,
            format!("this host has no unit {}; not checked (fix HEARTH_CHECK_UNITS if that is a typo)", check.unit),
        );
    }
    let max_age = duration(check.max_age_secs as i64 * 1000);
    let started = shown.started.and_then(timestamp);
    let exited = shown.exited.and_then(timestamp);
    let Some(exited) = exited.filter(|e| started.is_none_or(|s| *e >= s)) else {
        if let Some(started) = started {
            let ok = now_ms - started <= check.max_age_secs as i64 * 1000;
            return make(ok, format!("running since {} ({} ago)", format_rfc3339(started), duration(now_ms - started)));
        }
        // systemd forgets runs at a reboot: only a host up longer than the age is late.
        let up_long = uptime_secs.is_some_and(|up| up > check.max_age_secs);
        let since = if up_long { "in the" } else { "since boot, within the" };
        return make(!up_long, format!("no run recorded {since} {max_age} allowed"));
    };
    let took = started.map(|s| format!(", took {}", duration(exited - s))).unwrap_or_default();
    let when = format!("finished {} ({} ago){took}", format_rfc3339(exited), duration(now_ms - exited));
    let result = shown.result.unwrap_or("unknown");
    let status = shown.status.unwrap_or("?");
    if result != "success" || status != "0" {
        return make(false, format!("last run failed: {when}, Result={result}, exit status {status}"));
    }
    if now_ms - exited > check.max_age_secs as i64 * 1000 {
        return make(false, format!("last run too old: {when}; it must finish within {max_age}"));
    }
    make(true, format!("last run succeeded: {when}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-29T12:00:00Z.
    const NOW: i64 = 1_795_953_600_000;

    fn show(result: &str, status: &str, start: &str, exit: &str, load: &str) -> String {
        format!(
            "Result={result}\nExecMainStatus={status}\nExecMainExitTimestamp={exit}\n\
             ExecMainStartTimestamp={start}\nLoadState={load}\n"
        )
    }

    #[test]
    fn specs() {
        let unit = |u: &str, secs| Ok(UnitCheck { unit: u.into(), max_age_secs: secs });
        assert_eq!(parse_spec("restic-backup.service@26h"), unit("restic-backup.service", 93_600));
        assert_eq!(parse_spec("certbot.service@8d"), unit("certbot.service", 691_200));
        assert_eq!(parse_spec("zfs-scrub@tank.service@2w"), unit("zfs-scrub@tank.service", 1_209_600));
        for bad in ["certbot.service", "certbot.service@", "x@8y", "@1d", "a b@1d", "x@0h"] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp("Sun 2026-11-29 03:00:01 UTC"), Some(NOW - 9 * 3_600_000 + 1000));
        assert_eq!(timestamp("@1795953600"), Some(NOW));
        assert_eq!(timestamp("Sun 2026-11-29 03:00:01 CET"), None);
        assert_eq!(timestamp("n/a"), None);
    }

    #[test]
    fn last_runs_are_judged() {
        let check = UnitCheck { unit: "restic-backup.service".into(), max_age_secs: 26 * 3600 };
        let (start, exit) = ("Sun 2026-11-29 03:00:01 UTC", "Sun 2026-11-29 03:12:45 UTC");
        let old_exit = "Fri 2026-11-27 03:12:45 UTC";
        let cases: &[(String, Option<u64>, bool, &str)] = &[
            (
                show("success", "0", start, exit, "loaded"),
                None,
                true,
                "last run succeeded: finished 2026-11-29T03:12:45Z (8 h 47 min ago), took 12 min",
            ),
            (
                show("exit-code", "1", start, exit, "loaded"),
                None,
                false,
                "last run failed: finished 2026-11-29T03:12:45Z",
            ),
            (show("exit-code", "1", start, exit, "loaded"), None, false, "Result=exit-code, exit status 1"),
            (show("timeout", "0", start, exit, "loaded"), None, false, "Result=timeout"),
            (show("success", "0", "Fri 2026-11-27 03:00:01 UTC", old_exit, "loaded"), None, false, "last run too old"),
            (show("success", "0", "", "", "not-found"), None, true, "this host has no unit restic-backup.service"),
            (show("success", "0", "", "", "loaded"), Some(3600), true, "no run recorded since boot"),
            (show("success", "0", "", "", "loaded"), Some(30 * 3600), false, "no run recorded in the 26 h 0 min"),
            (show("success", "0", "Sun 2026-11-29 11:00:00 UTC", exit, "loaded"), None, true, "running since"),
        ];
        for (output, uptime, ok, detail) in cases {
            let got = judge(&check, Ok(output), NOW, *uptime);
            assert_eq!(got.ok, *ok, "{output}: {got:?}");
            assert!(got.detail.contains(detail), "{output}: {} lacks {detail:?}", got.detail);
            assert_eq!(got.name, "restic-backup.service last run");
        }
        let no_systemd = judge(&check, Err("systemd is not running on this host"), NOW, None);
        assert!(no_systemd.ok && no_systemd.detail.contains("not checked"), "{no_systemd:?}");
        let hung = judge(&check, Err("systemctl did not answer within 5 s"), NOW, None);
        assert!(!hung.ok && hung.detail.contains("did not answer"), "{hung:?}");
    }
}
