//! The driver's one timer (`Swim::poll_timeout`): a Linux `timerfd` when it can, else a tokio
//! `Sleep`.
//!
//! Why not just a tokio `Sleep`: tokio's timer wheel files a deadline more than 64 ms away in a
//! coarser level and wakes the process at the start of that level's slot to move it down, then
//! again at the deadline. The driver's deadlines (the next probe, the next reap, ...) are mostly
//! hundreds of milliseconds away, so an idle node woke up about twice per deadline; the wake-ups,
//! not the instructions, are most of an idle agent's CPU time. A `timerfd` armed for the deadline
//! wakes the process once, through the I/O driver.
//!
//! A paused tokio clock (tests) is honoured: when the clock reads the same twice in a row at
//! start, the timer is a tokio `Sleep` on that clock, as before.

use std::pin::Pin;
use std::time::Instant;

/// The driver's timer: [`Timer::set`] the deadline, await [`Timer::fired`].
pub(crate) struct Timer {
    inner: Inner,
    armed: Option<Instant>,
}

enum Inner {
    Sleep(Pin<Box<tokio::time::Sleep>>),
    #[cfg(target_os = "linux")]
    Fd(fd::TimerFd),
}

impl Timer {
    /// A timer on tokio's clock `now` (see [`crate::actor::now`]).
    pub(crate) fn new() -> Self {
        let paused = tokio::time::Instant::now() == tokio::time::Instant::now();
        #[cfg(target_os = "linux")]
        if !paused {
            match fd::TimerFd::new() {
                Ok(timer) => return Self { inner: Inner::Fd(timer), armed: None },
                Err(error) => tracing::debug!(%error, "no timerfd; the driver uses a tokio timer"),
            }
        }
        let _ = paused;
        Self { inner: Inner::Sleep(Box::pin(tokio::time::sleep(std::time::Duration::ZERO))), armed: None }
    }

    /// Fire at `deadline` (at once if it passed); `None` keeps the last one (the driver then does
    /// not wait on the timer).
    pub(crate) fn set(&mut self, deadline: Option<Instant>, now: Instant) {
        let Some(deadline) = deadline else { return };
        if self.armed == Some(deadline) {
            return;
        }
        self.armed = Some(deadline);
        match &mut self.inner {
            Inner::Sleep(sleep) => sleep.as_mut().reset(tokio::time::Instant::from_std(deadline)),
            #[cfg(target_os = "linux")]
            Inner::Fd(timer) => timer.arm(deadline.saturating_duration_since(now)),
        }
        let _ = now;
    }

    /// Resolves once the deadline set last has passed. Cancel-safe: dropping it loses nothing (a
    /// fire is remembered until awaited). A spurious fire is possible; the state machine's
    /// `handle_timeout` does only what is due.
    pub(crate) async fn fired(&mut self) {
        match &mut self.inner {
            Inner::Sleep(sleep) => sleep.as_mut().await,
            #[cfg(target_os = "linux")]
            Inner::Fd(timer) => timer.fired().await,
        }
        // Fired: set() arms the next deadline even if it equals this one.
        self.armed = None;
    }
}

#[cfg(target_os = "linux")]
mod fd {
    use std::io;
    use std::os::fd::OwnedFd;
    use std::time::Duration;

    use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    /// A non-blocking `CLOCK_MONOTONIC` timerfd (the clock of `std::time::Instant` on Linux),
    /// armed with relative one-shot deadlines.
    pub(super) struct TimerFd {
        fd: AsyncFd<OwnedFd>,
    }

    impl TimerFd {
        pub(super) fn new() -> io::Result<Self> {
            let owned = rustix::time::timerfd_create(
                TimerfdClockId::Monotonic,
                TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
            )?;
            // SAFETY: the OwnedFd is a valid descriptor, owned by the AsyncFd until it is
            // dropped, and never replaced or closed meanwhile.
            let fd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE)? };
            Ok(Self { fd })
        }

        /// Expire once, `after` from now (a zero delay expires at once: 1 ns, as zero disarms).
        pub(super) fn arm(&mut self, after: Duration) {
            let after = after.max(Duration::from_nanos(1));
            let spec = Itimerspec {
                it_interval: Timespec { tv_sec: 0, tv_nsec: 0 },
                it_value: Timespec {
                    tv_sec: after.as_secs().try_into().unwrap_or(i64::MAX),
                    tv_nsec: after.subsec_nanos().into(),
                },
            };
            if let Err(error) = rustix::time::timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec) {
                // Cannot happen with a valid descriptor and spec; never leave the driver asleep.
                tracing::warn!(%error, "timerfd_settime failed");
            }
        }

        pub(super) async fn fired(&mut self) {
            loop {
                let Ok(mut guard) = self.fd.readable().await else {
                    // The reactor is gone (runtime shutting down): never fire.
                    return std::future::pending().await;
                };
                let mut expirations = [0u8; 8];
                let read = rustix::io::read(guard.get_inner(), &mut expirations);
                // Read or not (EAGAIN: not expired yet, or re-armed since), the descriptor is
                // drained: the next expiration is a new edge.
                guard.clear_ready();
                if read == Ok(8) {
                    return;
                }
            }
        }
    }
}
