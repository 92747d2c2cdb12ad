//! The contract of [`IngestReceipts`], written once and run against every adapter (SQLite in
//! `crates/upsell-sqlite`, DynamoDB on moto in `crates/upsell-aws`) with
//! [`ingest_receipts_contract!`](crate::ingest_receipts_contract). Behind the `contract`
//! feature; adapters enable it for their tests only.
//!
//! Each case takes fresh, empty receipts and panics on the first broken promise. Times are
//! passed in (the port takes `now`), so the cases need no clock.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use chrono::{DateTime, Duration, Utc};

use crate::ingest::{Claim, IngestReceipts};
use crate::ports::PortError;

/// Makes one `#[tokio::test]` per contract case. `$make` is an async expression yielding
/// `Option<impl IngestReceipts>`: fresh, empty receipts (`None`: the backend is unavailable and
/// the test says it is skipped; a backend the CI requires must panic instead).
#[macro_export]
macro_rules! ingest_receipts_contract {
    ($make:expr) => {
        $crate::ingest_receipts_contract!(@cases $make;
            a_claimed_id_is_published_once,
            an_expired_claim_is_taken_over,
            release_frees_a_pending_claim_only,
            completing_an_unclaimed_id_is_not_found,
            concurrent_claims_have_one_winner,
            concurrent_takeovers_have_one_winner);
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(receipts) = $make.await else { return };
                $crate::ingest_contract::$case(&receipts).await;
            }
        )*
    };
}

const LEASE: i64 = 30;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + seconds, 0).expect("valid time")
}

fn lease() -> Duration {
    Duration::seconds(LEASE)
}

async fn claim(r: &dyn IngestReceipts, id: &str, t: i64) -> Claim {
    r.claim(id, at(t), lease())
        .await
        .unwrap_or_else(|e| panic!("claim {id} at {t}: {e}"))
}

/// Claimed, then in progress while the lease lasts, then done with the bus id for good.
pub async fn a_claimed_id_is_published_once(r: &dyn IngestReceipts) {
    assert_eq!(claim(r, "e1", 0).await, Claim::Claimed);
    assert_eq!(
        claim(r, "e1", 10).await,
        Claim::InProgress { until: at(LEASE) }
    );
    r.complete("e1", "bus-1").await.unwrap();
    let done = Claim::Done {
        bus_event_id: "bus-1".into(),
    };
    assert_eq!(claim(r, "e1", 11).await, done);
    assert_eq!(
        claim(r, "e1", 10_000).await,
        done,
        "a done receipt never expires into a new claim"
    );
    // Other ids are independent.
    assert_eq!(claim(r, "e2", 11).await, Claim::Claimed);
}

/// A request that died leaves a pending claim; once its lease is over another takes it.
pub async fn an_expired_claim_is_taken_over(r: &dyn IngestReceipts) {
    assert_eq!(claim(r, "e1", 0).await, Claim::Claimed);
    assert_eq!(claim(r, "e1", LEASE + 1).await, Claim::Claimed);
    assert_eq!(
        claim(r, "e1", LEASE + 2).await,
        Claim::InProgress {
            until: at(2 * LEASE + 1)
        },
        "the new claim has a new lease"
    );
    r.complete("e1", "bus-2").await.unwrap();
    assert_eq!(
        claim(r, "e1", LEASE + 3).await,
        Claim::Done {
            bus_event_id: "bus-2".into()
        }
    );
}

/// Releasing drops a pending claim (a retry may publish) and leaves a done receipt alone.
pub async fn release_frees_a_pending_claim_only(r: &dyn IngestReceipts) {
    assert_eq!(claim(r, "e1", 0).await, Claim::Claimed);
    r.release("e1").await.unwrap();
    assert_eq!(claim(r, "e1", 1).await, Claim::Claimed);
    r.complete("e1", "bus-1").await.unwrap();
    r.release("e1").await.unwrap();
    assert_eq!(
        claim(r, "e1", 2).await,
        Claim::Done {
            bus_event_id: "bus-1".into()
        }
    );
    r.release("never-claimed").await.unwrap();
}

/// Completing an id nobody claimed is an error, and writes nothing.
pub async fn completing_an_unclaimed_id_is_not_found(r: &dyn IngestReceipts) {
    let err = r.complete("ghost", "bus-1").await.unwrap_err();
    assert!(matches!(err, PortError::NotFound(_)), "{err}");
    assert_eq!(claim(r, "ghost", 0).await, Claim::Claimed);
}

/// Four claims of `id` at `t`, polled together (interleaved on the test's task).
async fn race(r: &dyn IngestReceipts, id: &str, t: i64) -> Vec<Claim> {
    JoinAll {
        pending: (0..4)
            .map(|_| {
                let f: Pending<'_> = Box::pin(claim(r, id, t));
                Some(f)
            })
            .collect(),
        done: vec![None; 4],
    }
    .await
}

type Pending<'a> = Pin<Box<dyn Future<Output = Claim> + 'a>>;

/// Polls every future until all are ready (`futures::future::join_all`, without the crate).
struct JoinAll<'a> {
    pending: Vec<Option<Pending<'a>>>,
    done: Vec<Option<Claim>>,
}

impl Future for JoinAll<'_> {
    type Output = Vec<Claim>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<Claim>> {
        let this = &mut *self;
        for (slot, out) in this.pending.iter_mut().zip(this.done.iter_mut()) {
            if let Some(f) = slot
                && let Poll::Ready(claim) = f.as_mut().poll(cx)
            {
                *out = Some(claim);
                *slot = None;
            }
        }
        if this.pending.iter().all(Option::is_none) {
            Poll::Ready(
                this.done
                    .iter_mut()
                    .map(|c| c.take().expect("ready"))
                    .collect(),
            )
        } else {
            Poll::Pending
        }
    }
}

fn winners(claims: &[Claim]) -> usize {
    claims.iter().filter(|c| **c == Claim::Claimed).count()
}

/// Requests racing for a new id: exactly one claims it, the others see it in progress.
pub async fn concurrent_claims_have_one_winner(r: &dyn IngestReceipts) {
    let claims = race(r, "e1", 0).await;
    assert_eq!(winners(&claims), 1, "{claims:?}");
    assert!(
        claims
            .iter()
            .all(|c| matches!(c, Claim::Claimed | Claim::InProgress { .. })),
        "{claims:?}"
    );
}

/// Requests racing for an expired claim: exactly one takes it over.
pub async fn concurrent_takeovers_have_one_winner(r: &dyn IngestReceipts) {
    assert_eq!(claim(r, "e1", 0).await, Claim::Claimed);
    let claims = race(r, "e1", LEASE + 5).await;
    assert_eq!(winners(&claims), 1, "{claims:?}");
    assert!(
        claims
            .iter()
            .all(|c| matches!(c, Claim::Claimed | Claim::InProgress { .. })),
        "{claims:?}"
    );
}
