//! How often the ring buffer is drained. Most records are written without waking the daemon
//! (see monitor_common's wake-up thresholds), so the daemon looks on a tick.
use std::time::Duration;

/// When to look at the ring buffer next: every 10 ms while records keep coming, backing off
/// (doubling) to 200 ms when a look finds nothing. A quicker idle tick was measurable on the other
/// CPU of this 2-core VM (pipe writes 1.5-2% slower with a 10 ms tick, none with 1 s).
#[derive(Debug)]
pub(super) struct DrainPacer {
    pub(super) interval: Duration,
}

pub(super) const DRAIN_BUSY: Duration = Duration::from_millis(10);
const DRAIN_IDLE: Duration = Duration::from_millis(200);

impl Default for DrainPacer {
    fn default() -> Self {
        DrainPacer {
            interval: DRAIN_BUSY,
        }
    }
}

impl DrainPacer {
    /// The wait before the next look, after one that found `found` records.
    pub(super) fn after_drain(&mut self, found: usize) -> Duration {
        self.interval = if found > 0 {
            DRAIN_BUSY
        } else {
            (self.interval * 2).min(DRAIN_IDLE)
        };
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_pacer_backs_off_when_idle_and_snaps_back_on_records() {
        let mut p = DrainPacer::default();
        assert_eq!(p.interval, DRAIN_BUSY);
        let waits: Vec<u64> = (0..6)
            .map(|_| p.after_drain(0).as_millis() as u64)
            .collect();
        assert_eq!(waits, [20, 40, 80, 160, 200, 200]);
        assert_eq!(p.after_drain(3), DRAIN_BUSY);
        assert_eq!(p.after_drain(0), DRAIN_BUSY * 2);
    }
}
