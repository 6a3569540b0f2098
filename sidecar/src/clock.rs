//! Kernel timestamps as wall-clock time.

use serde::Serialize;

/// Kernel boot-time nanoseconds to wall-clock RFC 3339.
///
/// The offset between CLOCK_REALTIME and CLOCK_BOOTTIME is taken once at
/// start: events then keep their kernel order even if the wall clock is
/// stepped later.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    offset_ns: i128,
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into `ts`; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

impl Clock {
    pub fn new() -> Self {
        let boot = clock_ns(libc::CLOCK_BOOTTIME);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Clock {
            offset_ns: real - boot,
        }
    }

    #[cfg(test)]
    fn with_offset(offset_ns: i128) -> Self {
        Clock { offset_ns }
    }

    pub fn boot_ns(&self) -> u64 {
        u64::try_from(clock_ns(libc::CLOCK_BOOTTIME)).unwrap_or(0)
    }

    pub fn rfc3339(&self, boot_ns: u64) -> Rfc3339 {
        Rfc3339(i128::from(boot_ns) + self.offset_ns)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Unix nanoseconds, shown as RFC 3339 with always nine fraction digits,
/// UTC, `Z`; serialized straight into the output, without a String.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339(pub i128);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match time::OffsetDateTime::from_unix_timestamp_nanos(self.0) {
            Ok(t) => write!(
                f,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.nanosecond()
            ),
            // Out of range only for a corrupt timestamp; keep the line valid.
            Err(_) => f.write_str("1970-01-01T00:00:00.000000000Z"),
        }
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Rfc3339 {
    /// `HH:MM:SS.mmm`, UTC: the text output's time column.
    pub fn time_of_day(&self) -> String {
        match time::OffsetDateTime::from_unix_timestamp_nanos(self.0) {
            Ok(t) => format!(
                "{:02}:{:02}:{:02}.{:03}",
                t.hour(),
                t.minute(),
                t.second(),
                t.millisecond()
            ),
            Err(_) => "00:00:00.000".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_nanoseconds() {
        assert_eq!(Rfc3339(0).to_string(), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            Rfc3339(1_795_342_502_123_456_789).to_string(),
            "2026-11-22T10:15:02.123456789Z"
        );
        assert_eq!(
            Rfc3339(i128::MAX).to_string(),
            "1970-01-01T00:00:00.000000000Z"
        );
        assert_eq!(
            Clock::with_offset(1_000_000_000).rfc3339(5).to_string(),
            "1970-01-01T00:00:01.000000005Z"
        );
        assert_eq!(
            serde_json::to_string(&Rfc3339(5)).expect("json"),
            "\"1970-01-01T00:00:00.000000005Z\""
        );
        // Now, via the real clocks, is within a minute of the system time.
        let c = Clock::new();
        let now = c.rfc3339(c.boot_ns()).to_string();
        let sys = time::OffsetDateTime::now_utc();
        assert!(now.starts_with(&format!("{:04}-", sys.year())), "{now}");
    }

    #[test]
    fn time_of_day_for_the_text_output() {
        assert_eq!(
            Rfc3339(1_795_342_502_123_456_789).time_of_day(),
            "10:15:02.123"
        );
        assert_eq!(Rfc3339(i128::MAX).time_of_day(), "00:00:00.000");
    }
}
