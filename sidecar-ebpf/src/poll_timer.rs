//! A sub-millisecond periodic tick for the ring-buffer reader.
//!
//! Tokio's timers tick in whole milliseconds; the reader polls the ring every
//! few hundred microseconds while events flow, so it waits on a timerfd
//! registered with the reactor instead. The timer is periodic, so a tick
//! costs one read, not a re-arm as well.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::io::Errno;
use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

pub(crate) struct PollTimer {
    fd: AsyncFd<OwnedFd>,
}

impl PollTimer {
    /// A stopped timer. Must be called inside a Tokio runtime with I/O
    /// enabled (it panics otherwise).
    pub(crate) fn new() -> io::Result<Self> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // SAFETY: the OwnedFd keeps the timerfd open, unchanged, for as long
        // as the AsyncFd that owns it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(PollTimer { fd })
    }

    /// Tick every `period` from now on; discards ticks not yet waited for.
    pub(crate) fn start(&self, period: Duration) -> io::Result<()> {
        let period = Timespec::try_from(period.max(Duration::from_nanos(1)))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "period too long"))?;
        self.arm(period)
    }

    /// No more ticks until the next start().
    pub(crate) fn stop(&self) -> io::Result<()> {
        // A zero it_value disarms the timer.
        self.arm(Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        })
    }

    fn arm(&self, period: Timespec) -> io::Result<()> {
        let spec = Itimerspec {
            it_interval: period,
            it_value: period,
        };
        timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
        Ok(())
    }

    /// Wait for the next tick; at once if ticks passed since the last wait.
    /// Cancel-safe. Never completes while the timer is stopped.
    pub(crate) async fn tick(&mut self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable_mut().await?;
            let mut expirations = [0u8; 8];
            match rustix::io::read(guard.get_inner_mut(), &mut expirations) {
                Ok(_) => {
                    // The read took every pending tick: not readable until
                    // the next one, so the next wait need not try a read.
                    guard.clear_ready();
                    return Ok(());
                }
                Err(Errno::AGAIN) => guard.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn ticks_at_the_period_until_stopped() {
        let mut timer = PollTimer::new().expect("timerfd");
        let period = Duration::from_micros(400);
        let start = Instant::now();
        timer.start(period).expect("start");
        for _ in 0..5 {
            timer.tick().await.expect("tick");
        }
        assert!(start.elapsed() >= 5 * period, "{:?}", start.elapsed());

        // Stopped: ticks missed before the stop are gone and none comes.
        std::thread::sleep(3 * period);
        timer.stop().expect("stop");
        let waited = tokio::time::timeout(Duration::from_millis(20), timer.tick()).await;
        assert!(waited.is_err(), "a stopped timer ticked");

        // Restarted with a longer period: the first tick waits for it.
        let start = Instant::now();
        timer.start(Duration::from_millis(3)).expect("start");
        timer.tick().await.expect("tick");
        assert!(
            start.elapsed() >= Duration::from_millis(3),
            "{:?}",
            start.elapsed()
        );
    }
}
