//! Kernel timestamps (CLOCK_BOOTTIME nanoseconds) to wall-clock time for `@timestamp`, and the
//! monotonic clock for systemd notifications.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; both clocks exist on every Linux the agent supports.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// CLOCK_BOOTTIME now, in nanoseconds: the clock of `bpf_ktime_get_boot_ns`.
pub fn boot_ns() -> u64 {
    now_ns(libc::CLOCK_BOOTTIME)
}

/// CLOCK_MONOTONIC now, in nanoseconds: the clock systemd's MONOTONIC_USEC refers to.
pub fn monotonic_ns() -> u64 {
    now_ns(libc::CLOCK_MONOTONIC)
}

/// The wall-clock time at which the kernel's boot-clock reading `ts_boot_ns` was taken.
pub fn wall_time(ts_boot_ns: u64) -> SystemTime {
    let real = now_ns(libc::CLOCK_REALTIME);
    let boot = boot_ns();
    let age = boot.saturating_sub(ts_boot_ns);
    UNIX_EPOCH + Duration::from_nanos(real.saturating_sub(age))
}

/// RFC 3339 with microseconds, UTC: `2026-11-26T03:20:11.123456Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_boot_reading_maps_to_now() {
        let before = SystemTime::now();
        let t = wall_time(boot_ns());
        let after = SystemTime::now();
        let slack = Duration::from_millis(50);
        assert!(t + slack >= before && t <= after + slack);
    }

    #[test]
    fn older_reading_is_earlier_by_its_age() {
        let now = boot_ns();
        let a = wall_time(now);
        let b = wall_time(now - 5_000_000_000);
        let d = a.duration_since(b).unwrap();
        assert!(
            d >= Duration::from_millis(4_900) && d <= Duration::from_millis(5_100),
            "{d:?}"
        );
    }

    #[test]
    fn format_is_rfc3339_utc() {
        let s = rfc3339(UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456));
        assert_eq!(s, "2023-11-14T22:13:20.123456Z");
    }
}
