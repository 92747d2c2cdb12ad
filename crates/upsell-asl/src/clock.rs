//! Time: a real clock, and a virtual clock on which Wait states and retry intervals pass
//! instantly while the context object's timestamps still follow simulated time.

use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Where executions get the time and how they wait.
#[async_trait::async_trait]
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
    /// Waits `d` (really or virtually).
    async fn sleep(&self, d: Duration);
    /// Holds simulated time while the guard lives (see [`VirtualClock::hold`]); `None` when
    /// this clock's time cannot be held (real time).
    fn hold(&self) -> Option<HeldTime> {
        None
    }
}

/// Wall-clock time and real sleeping.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealClock;

#[async_trait::async_trait]
impl Clock for RealClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

/// Simulated time built on tokio's paused clock: run executions on a runtime from
/// [`virtual_runtime`] (current-thread, time paused), where every sleep and timeout completes
/// as soon as nothing else can run, in deadline order. `now()` is the start time plus the
/// simulated time elapsed, so timeouts still race correctly against slow tasks.
///
/// [`Clock::hold`] stops simulated time for work run off the paused runtime (on a
/// multi-threaded one, to use every core) while the paused runtime's thread blocks waiting for
/// it: nothing on the paused runtime can run meanwhile, so its time would not move either.
#[derive(Debug, Clone)]
pub struct VirtualClock {
    start: DateTime<Utc>,
    origin: tokio::time::Instant,
    /// The held reading in microseconds since the epoch, or [`NOT_HELD`]; shared by clones.
    held: Arc<AtomicI64>,
}

const NOT_HELD: i64 = i64::MIN;

impl VirtualClock {
    /// A virtual clock reading `start` now. Call inside the paused runtime.
    pub fn new(start: DateTime<Utc>) -> VirtualClock {
        VirtualClock {
            start,
            origin: tokio::time::Instant::now(),
            held: Arc::new(AtomicI64::new(NOT_HELD)),
        }
    }

    fn paused_now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.origin);
        self.start + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }
}

/// Simulated time held by [`VirtualClock::hold`]; it runs on when this is dropped.
#[derive(Debug)]
#[must_use = "time runs on as soon as the guard is dropped"]
pub struct HeldTime {
    held: Arc<AtomicI64>,
}

impl Drop for HeldTime {
    fn drop(&mut self) {
        self.held.store(NOT_HELD, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        match self.held.load(Ordering::SeqCst) {
            NOT_HELD => self.paused_now(),
            micros => DateTime::from_timestamp_micros(micros).unwrap_or(self.start),
        }
    }
    async fn sleep(&self, d: Duration) {
        if self.held.load(Ordering::SeqCst) == NOT_HELD {
            tokio::time::sleep(d).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
    /// Holds simulated time at its current reading until the guard is dropped: meanwhile
    /// `now()` returns that reading on any thread and runtime, and sleeps (retry intervals,
    /// Wait states) return at once, as they would on the paused runtime. Call inside the paused
    /// runtime, then block its thread until the held work is done.
    fn hold(&self) -> Option<HeldTime> {
        let now = self.paused_now().timestamp_micros();
        self.held.store(now, Ordering::SeqCst);
        Some(HeldTime {
            held: Arc::clone(&self.held),
        })
    }
}

/// A current-thread runtime with paused time, for [`VirtualClock`].
pub fn virtual_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_time_stands_still_on_other_runtimes_and_runs_on_after() {
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        virtual_runtime().unwrap().block_on(async {
            let clock = VirtualClock::new(start);
            clock.sleep(Duration::from_secs(60)).await;
            let at = clock.now();
            assert_eq!(at, start + chrono::Duration::seconds(60));
            let held = clock.hold().expect("a virtual clock can be held");
            // Work on a multi-threaded runtime, the paused runtime's thread blocked meanwhile.
            let seen = std::thread::scope(|s| {
                s.spawn(|| {
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        let before = clock.now();
                        let real = std::time::Instant::now();
                        clock.sleep(Duration::from_secs(3600)).await;
                        (before, clock.now(), real.elapsed())
                    })
                })
                .join()
                .unwrap()
            });
            assert_eq!((seen.0, seen.1), (at, at), "held time does not move");
            assert!(
                seen.2 < Duration::from_secs(60),
                "a held sleep returns at once"
            );
            drop(held);
            assert_eq!(clock.now(), at);
            clock.sleep(Duration::from_secs(30)).await;
            assert_eq!(clock.now(), at + chrono::Duration::seconds(30));
        });
        assert!(RealClock.hold().is_none());
    }
}
