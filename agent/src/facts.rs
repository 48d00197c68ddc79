//! Host facts read from /proc, uname(2), statvfs(3) and getifaddrs(3). Nothing here fails:
//! a fact that cannot be read is left out of the heartbeat.

use std::ffi::{CStr, CString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub hostname: String,
    pub kernel: Option<String>,
    /// The machine as the kernel names it: x86_64, aarch64, armv7l, armv6l…
    pub arch: String,
    pub cpu_cores: Option<u64>,
    pub memory_mb: Option<u64>,
    pub mem_available_mb: Option<u64>,
    pub disk_gb: Option<u64>,
    pub disk_free_gb: Option<u64>,
    pub load: Option<Vec<f64>>,
    pub uptime_secs: Option<u64>,
    pub boot_id: Option<String>,
    pub os_id: Option<String>,
    pub ip_addresses: Vec<String>,
}

/// Reads every fact. `disk_path` is the filesystem whose size is reported.
pub fn gather(disk_path: &str) -> Facts {
    let (hostname, kernel, arch) = uname();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let (disk_gb, disk_free_gb) = disk(disk_path).unzip();
    Facts {
        hostname,
        kernel,
        arch,
        // SAFETY: sysconf has no preconditions; it returns -1 when the value is unknown.
        cpu_cores: u64::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).ok().filter(|n| *n > 0),
        memory_mb: meminfo_kib(&meminfo, "MemTotal").map(|kib| kib / 1024),
        mem_available_mb: meminfo_kib(&meminfo, "MemAvailable").map(|kib| kib / 1024),
        disk_gb,
        disk_free_gb,
        load: std::fs::read_to_string("/proc/loadavg").ok().and_then(|text| parse_loadavg(&text)),
        uptime_secs: std::fs::read_to_string("/proc/uptime").ok().and_then(|text| parse_uptime(&text)),
        boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_owned()),
        os_id: std::fs::read_to_string("/etc/os-release").ok().and_then(|text| os_release_id(&text)),
        ip_addresses: interface_addresses(),
    }
}

fn uname() -> (String, Option<String>, String) {
    // SAFETY: utsname is plain old data; uname fills it with NUL-terminated strings.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return ("localhost".into(), None, std::env::consts::ARCH.into());
    }
    // SAFETY: each field is NUL-terminated within its array after a successful uname.
    let field = |raw: &[libc::c_char]| unsafe { CStr::from_ptr(raw.as_ptr()) }.to_string_lossy().into_owned();
    (field(&uts.nodename), Some(field(&uts.release)), field(&uts.machine))
}

fn disk(path: &str) -> Option<(u64, u64)> {
    let path = CString::new(path).ok()?;
    // SAFETY: statvfs is plain old data, filled by statvfs(3) from a valid C string path.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut vfs) } != 0 {
        return None;
    }
    let unit = vfs.f_frsize as u64;
    let gib = |blocks: u64| blocks.saturating_mul(unit) >> 30;
    Some((gib(vfs.f_blocks as u64), gib(vfs.f_bavail as u64)))
}

fn meminfo_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

fn parse_loadavg(text: &str) -> Option<Vec<f64>> {
    let load: Vec<f64> = text.split_whitespace().take(3).filter_map(|n| n.parse().ok()).collect();
    (load.len() == 3).then_some(load)
}

fn parse_uptime(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse::<f64>().ok().map(|secs| secs as u64)
}

fn os_release_id(text: &str) -> Option<String> {
    let pairs = crate::envfile::parse(text).ok()?;
    pairs.into_iter().find(|(k, _)| k == "ID").map(|(_, v)| v).filter(|v| !v.is_empty())
}

/// The local address the kernel would use to reach `host:port`; no packet is sent.
pub fn primary_ip(host: &str, port: u16) -> Option<String> {
    let target = std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).ok()?.next()?;
    let any: IpAddr = if target.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let socket = UdpSocket::bind((any, 0)).ok()?;
    socket.connect(target).ok()?;
    Some(socket.local_addr().ok()?.ip().to_string())
}

/// Every address on an interface that is up, loopback excepted.
fn interface_addresses() -> Vec<String> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list that we walk read-only and free once with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, which stays valid until freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        let up = entry.ifa_flags & libc::IFF_UP as libc::c_uint != 0;
        if entry.ifa_addr.is_null() || !up {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr whose family says which sockaddr_* it is.
        let ip: Option<IpAddr> = unsafe {
            match i32::from((*entry.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*entry.ifa_addr.cast::<libc::sockaddr_in>();
                    Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).into())
                }
                libc::AF_INET6 => {
                    let sin6 = &*entry.ifa_addr.cast::<libc::sockaddr_in6>();
                    Some(Ipv6Addr::from(sin6.sin6_addr.s6_addr).into())
                }
                _ => None,
            }
        };
        if let Some(ip) = ip.filter(|ip| !ip.is_loopback()) {
            let text = ip.to_string();
            if !out.contains(&text) {
                out.push(text);
            }
        }
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        let meminfo = "MemTotal:        8000000 kB\nMemFree:  10 kB\nMemAvailable:    4096000 kB\n";
        assert_eq!(meminfo_kib(meminfo, "MemTotal"), Some(8_000_000));
        assert_eq!(meminfo_kib(meminfo, "MemAvailable"), Some(4_096_000));
        assert_eq!(meminfo_kib(meminfo, "Swap"), None);
        assert_eq!(parse_loadavg("0.52 0.58 0.59 1/467 12345\n"), Some(vec![0.52, 0.58, 0.59]));
        assert_eq!(parse_loadavg("garbage"), None);
        assert_eq!(parse_uptime("350735.47 234388.90\n"), Some(350_735));
        assert_eq!(os_release_id("NAME=\"Debian GNU/Linux\"\nID=debian\n"), Some("debian".into()));
        assert_eq!(os_release_id("ID=\"raspbian\"\n"), Some("raspbian".into()));
    }

    #[test]
    fn this_host_has_the_basics() {
        let facts = gather("/");
        assert!(!facts.hostname.is_empty() && !facts.arch.is_empty());
        assert!(facts.cpu_cores.unwrap() >= 1);
        assert!(facts.memory_mb.unwrap() > 0 && facts.disk_gb.is_some());
        assert_eq!(facts.load.as_ref().map(Vec::len), Some(3));
        assert_eq!(primary_ip("127.0.0.1", 9).as_deref(), Some("127.0.0.1"));
    }
}
