//! Time: a real clock, and a virtual clock on which Wait states and retry intervals pass
//! instantly while the context object's timestamps still follow simulated time.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// Where executions get the time and how they wait.
#[async_trait::async_trait]
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
    /// Waits `d` (really or virtually).
    async fn sleep(&self, d: Duration);
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
#[derive(Debug, Clone)]
pub struct VirtualClock {
    start: DateTime<Utc>,
    origin: tokio::time::Instant,
}

impl VirtualClock {
    /// A virtual clock reading `start` now. Call inside the paused runtime.
    pub fn new(start: DateTime<Utc>) -> VirtualClock {
        VirtualClock {
            start,
            origin: tokio::time::Instant::now(),
        }
    }
}

#[async_trait::async_trait]
impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.origin);
        self.start + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

/// A current-thread runtime with paused time, for [`VirtualClock`].
pub fn virtual_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
}
