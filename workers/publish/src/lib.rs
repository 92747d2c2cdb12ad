//! The publish worker: writes each event's one terminal record and announces approved messages.
//!
//! The state machine calls it from its terminal states with an `outcome`:
//! - `published` (Publish): stores the approved MessageRecord and puts an
//!   `UpsellMessageApproved` event on the bus;
//! - `rejected` (RecordRejection), `failed` (RecordFailure), `skipped` (RecordSkipped): stores
//!   the MessageRecord with that status;
//! - `quarantined` (Quarantine): stores the event verbatim with every validation problem.
//!
//! Idempotent by event id: a second call for the same event writes nothing and publishes
//! nothing. For approved messages the bus event goes out before the record is written and
//! only when no record exists, so a retry after a failed write may announce twice (consumers
//! deduplicate on `detail.eventId`) but an event is never lost.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use upsell_core::agent::AgentRef;
use upsell_core::counters::{VersionCounters, record_deltas, response_deltas};
use upsell_core::events::{CustomerEvent, EventDetail, RawEvent};
use upsell_core::message::{
    AttemptRecord, MessageRecord, MessageStatus, QuarantineRecord, TokenUsage,
};
use upsell_core::outbound::{OUTBOUND_SOURCE, UpsellMessageApproved, outbound_event};
use upsell_core::ports::dims::{AGENT_ID, AGENT_VERSION, REASON};
use upsell_core::ports::{EventPublisher, MessageStore, PortError, PutOutcome};
use upsell_core::telemetry::{
    ERROR_TYPE, EVENTS_FAILED, EVENTS_QUARANTINED, EVENTS_SKIPPED, MESSAGES_APPROVED,
    MESSAGES_REJECTED,
};
use upsell_core::validate::{Problem, RejectReason};
use upsell_core::worker::{ErrorName, Figures, StableError, Worker};
use upsell_models::pricing::cost_usd;
use upsell_models::prompt::Facts;
use upsell_models::seed::{GENERATOR_ID, JUDGE_ID};

/// `detail-type` of the announcement (its detail: core's [`UpsellMessageApproved`], whose
/// schema is `schemas/events/out/UpsellMessageApproved.schema.json`).
pub const APPROVED_DETAIL_TYPE: &str = <UpsellMessageApproved as EventDetail>::DETAIL_TYPE;
/// `source` of the announcement (outside the upstream rule's detail-types, so it never
/// triggers the workflow again).
pub const APPROVED_SOURCE: &str = OUTBOUND_SOURCE;

/// A Step Functions error as a Catch hands it over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepError {
    /// Error name, e.g. `ModelThrottled` or `States.Timeout`.
    #[serde(rename = "Error")]
    pub error: String,
    /// The error message.
    #[serde(rename = "Cause", default)]
    pub cause: Option<String>,
}

/// A finished generate/judge loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Finished {
    /// Triggering event id.
    pub event_id: String,
    /// Customer id.
    pub customer_id: String,
    /// Generator version.
    pub generator: AgentRef,
    /// Judge version.
    pub judge: AgentRef,
    /// The enrich step's facts (the offer).
    pub facts: Facts,
    /// Every attempt, the last one being the final message.
    pub history: Vec<AttemptRecord>,
    /// Generator model id (for the cost estimate).
    #[serde(default)]
    pub generator_model_id: Option<String>,
    /// Judge model id (for the cost estimate).
    #[serde(default)]
    pub judge_model_id: Option<String>,
    /// Execution start (`$$.Execution.StartTime`), for the latency.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
}

/// A workflow that failed after retries (the ASL's catch-all).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failed {
    /// The event as received (its id and customer id key the record).
    pub event: Value,
    /// The error caught.
    pub error: StepError,
    /// Execution start, for the latency.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// The generator routing chose (`$.generator`), null before routing ran.
    #[serde(default)]
    pub generator: Option<ChosenGenerator>,
    /// The last generate output (`$.generation`), null before the first one.
    #[serde(default)]
    pub generation: Option<LastGeneration>,
    /// The last judge output (`$.judged`), null before the first one.
    #[serde(default)]
    pub judged: Option<LastVerdict>,
}

/// The generator version routing chose; no version when the generate worker picks the
/// registry's production version itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChosenGenerator {
    /// Agent id.
    pub agent_id: String,
    /// The chosen version.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub version: Option<semver::Version>,
}

/// What a failed record needs of the generate worker's last output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastGeneration {
    /// Attempt number.
    pub attempt: u32,
    /// Generator version that ran.
    pub generator: AgentRef,
    /// Its model id (for the cost).
    pub model_id: String,
    /// Its tokens.
    pub usage: TokenUsage,
}

/// What a failed record needs of the judge worker's last output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastVerdict {
    /// Judge version that ran.
    pub judge: AgentRef,
    /// Its model id (for the cost).
    pub model_id: String,
    /// Every judged attempt so far.
    pub history: Vec<AttemptRecord>,
}

/// An event that deliberately gets no message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    /// Triggering event id.
    pub event_id: String,
    /// Customer id.
    pub customer_id: String,
    /// Why (`opted-out`, `no-profile`, `unhappy-customer`, `no-suitable-offer`).
    pub reason: String,
    /// Execution start, for the latency.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// The skipped event. For a response (`UpsellResponded`) its answer is counted for the
    /// agent versions that wrote the approved message it answers
    /// (`upsell_core::counters::response_deltas`), once, when the skipped record is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<RawEvent>,
}

/// An event that failed validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quarantined {
    /// The event as received.
    pub event: Value,
    /// The SchemaCheck error (its cause is the schema-check worker's JSON details).
    pub error: StepError,
    /// Where it came from, e.g. `eventbridge`.
    #[serde(default)]
    pub origin: Option<String>,
}

/// Input: which terminal record to write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Input {
    /// Approved: store and announce.
    Published(Finished),
    /// Every attempt rejected.
    Rejected(Finished),
    /// The workflow failed.
    Failed(Failed),
    /// No message on purpose.
    Skipped(Skipped),
    /// Failed validation.
    Quarantined(Quarantined),
}

/// Output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// `published`, `rejected`, `failed`, `skipped` or `quarantined`.
    pub outcome: String,
    /// The record key (event id or quarantine id).
    pub record_id: String,
    /// False when a record with that key already existed (nothing was written).
    pub record_written: bool,
    /// Whether an `UpsellMessageApproved` event was put on the bus.
    pub event_published: bool,
    /// The generator version the record names (published, rejected, failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<AgentRef>,
    /// The record's reason: the judge's first reason code (rejected), the error name (failed),
    /// the skip reason (skipped) or the quarantine reason (quarantined).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Worker errors.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The input cannot make a record.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The store or the bus failed.
    #[error(transparent)]
    Port(#[from] PortError),
}

impl WorkerError {
    /// The stable error name the state machine matches.
    pub fn error_type(&self) -> ErrorName {
        match self {
            WorkerError::InvalidInput(_) => ErrorName::InvalidRequest,
            WorkerError::Port(e) => e.error_type(),
        }
    }
}

/// Ports the worker needs.
#[derive(Clone)]
pub struct Deps {
    /// Message records.
    pub messages: Arc<dyn MessageStore>,
    /// The event bus.
    pub events: Arc<dyn EventPublisher>,
    /// Per-version live counters, added to for every record written.
    pub counters: Arc<dyn VersionCounters>,
}

fn latency(started_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> u64 {
    started_at.map_or(0, |s| {
        u64::try_from((now - s).num_milliseconds()).unwrap_or(0)
    })
}

/// Model cost in US dollars of each agent: (generator, judge). Unknown model ids cost 0.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Costs {
    generator: f64,
    judge: f64,
}

impl Costs {
    fn of(generator: (Option<&str>, TokenUsage), judge: (Option<&str>, TokenUsage)) -> Costs {
        let cost =
            |(model, usage): (Option<&str>, TokenUsage)| model.map_or(0.0, |m| cost_usd(m, usage));
        Costs {
            generator: cost(generator),
            judge: cost(judge),
        }
    }

    fn total(self) -> f64 {
        self.generator + self.judge
    }
}

/// Generator and judge tokens over `attempts`.
fn usage_of(attempts: &[AttemptRecord]) -> (TokenUsage, TokenUsage) {
    attempts.iter().fold(
        (TokenUsage::default(), TokenUsage::default()),
        |(g, j), a| (g + a.generator_usage, j + a.judge_usage),
    )
}

fn finished_record(
    f: &Finished,
    status: MessageStatus,
    now: DateTime<Utc>,
) -> Result<(MessageRecord, Costs), WorkerError> {
    let last = f.history.last().ok_or_else(|| {
        WorkerError::InvalidInput(format!("event {}: history has no attempt", f.event_id))
    })?;
    if status == MessageStatus::Approved && !last.verdict.approved {
        return Err(WorkerError::InvalidInput(format!(
            "event {}: the last attempt was not approved; refusing to publish it",
            f.event_id
        )));
    }
    let (gen_usage, judge_usage) = usage_of(&f.history);
    let costs = Costs::of(
        (f.generator_model_id.as_deref(), gen_usage),
        (f.judge_model_id.as_deref(), judge_usage),
    );
    let record = MessageRecord {
        event_id: f.event_id.clone(),
        customer_id: f.customer_id.clone(),
        status,
        message: Some(last.message.clone()),
        recommended_service: Some(f.facts.offer.service),
        offering: Some(f.facts.offer.offering.clone()),
        generator: f.generator.clone(),
        judge: f.judge.clone(),
        attempts: f.history.clone(),
        total_usage: gen_usage + judge_usage,
        cost_usd: costs.total(),
        latency_ms: latency(f.started_at, now),
        error: (status == MessageStatus::Rejected).then(|| {
            format!(
                "rejected after {} attempt(s): {}",
                f.history.len(),
                last.verdict.reasons.join(", ")
            )
        }),
        created_at: now,
    };
    Ok((record, costs))
}

/// The failed record: the versions that ran (the last generate and judge outputs; before the
/// first generation, the version routing chose), every judged attempt and the cost so far
/// (the judged attempts plus a generation the judge has not seen yet).
fn failed_record(f: &Failed, now: DateTime<Utc>) -> (MessageRecord, Costs) {
    let raw = serde_json::to_string(&f.event).expect("JSON values serialise");
    let event_id = f
        .event
        .get("id")
        .and_then(Value::as_str)
        .map_or_else(|| text_hash(&raw), str::to_owned);
    let customer_id = f
        .event
        .pointer("/detail/customerId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let attempts = f
        .judged
        .as_ref()
        .map(|j| j.history.clone())
        .unwrap_or_default();
    let (mut gen_usage, judge_usage) = usage_of(&attempts);
    if let Some(g) = &f.generation
        && !attempts.iter().any(|a| a.attempt == g.attempt)
    {
        gen_usage += g.usage;
    }
    let costs = Costs::of(
        (
            f.generation.as_ref().map(|g| g.model_id.as_str()),
            gen_usage,
        ),
        (f.judged.as_ref().map(|j| j.model_id.as_str()), judge_usage),
    );
    let generator = match (&f.generation, &f.generator) {
        (Some(g), _) => g.generator.clone(),
        (
            None,
            Some(ChosenGenerator {
                agent_id,
                version: Some(version),
            }),
        ) => AgentRef {
            agent_id: agent_id.clone(),
            version: version.clone(),
        },
        _ => AgentRef::placeholder(GENERATOR_ID),
    };
    let judge = f
        .judged
        .as_ref()
        .map_or_else(|| AgentRef::placeholder(JUDGE_ID), |j| j.judge.clone());
    let record = MessageRecord {
        event_id,
        customer_id,
        status: MessageStatus::Failed,
        message: None,
        recommended_service: None,
        offering: None,
        generator,
        judge,
        attempts,
        total_usage: gen_usage + judge_usage,
        cost_usd: costs.total(),
        latency_ms: latency(f.started_at, now),
        error: Some(format!(
            "{}: {}",
            f.error.error,
            f.error.cause.as_deref().unwrap_or("no cause given")
        )),
        created_at: now,
    };
    (record, costs)
}

fn announcement(record: &MessageRecord, f: &Finished) -> RawEvent {
    let detail = UpsellMessageApproved {
        event_id: record.event_id.clone(),
        customer_id: record.customer_id.clone(),
        message: record.message.clone(),
        offering: f.facts.offer.offering.clone(),
        service: f.facts.offer.service,
        generator: record.generator.clone(),
        judge: record.judge.clone(),
        score: f.history.last().map(|a| a.verdict.score),
        attempts: u32::try_from(f.history.len()).unwrap_or(u32::MAX),
    };
    outbound_event(
        format!("approved-{}", record.event_id),
        record.created_at,
        &detail,
    )
    .expect("an UpsellMessageApproved detail (strings, numbers, enums) always serialises")
}

/// Writes the record once; only a record written adds to the per-version counters.
async fn put(
    deps: &Deps,
    record: &MessageRecord,
    costs: Costs,
    outcome: &str,
    reason: Option<String>,
) -> Result<Output, WorkerError> {
    let written = deps.messages.put_if_absent(record).await? == PutOutcome::Inserted;
    if written {
        for (agent, delta) in record_deltas(record, costs.generator, costs.judge) {
            deps.counters.add(&agent, &delta).await?;
        }
    }
    Ok(Output {
        outcome: outcome.to_owned(),
        record_id: record.event_id.clone(),
        record_written: written,
        event_published: false,
        generator: (record.status != MessageStatus::Skipped).then(|| record.generator.clone()),
        reason,
    })
}

/// Counts a response for the versions of the message it answers (nothing for another event,
/// or a message that is unknown or was not approved).
async fn count_response(deps: &Deps, raw: &RawEvent) -> Result<(), WorkerError> {
    let Ok(CustomerEvent::UpsellResponded(e)) = CustomerEvent::try_from(raw.clone()) else {
        return Ok(());
    };
    let d = &e.detail;
    // A response to an unknown message counts for no version.
    let Some(record) = deps.messages.get(&d.message_event_id).await? else {
        return Ok(());
    };
    for (agent, delta) in response_deltas(&record, d.response) {
        deps.counters.add(&agent, &delta).await?;
    }
    Ok(())
}

/// The judge's first reason code of the last attempt (the rejection's reason).
fn rejection_reason(f: &Finished) -> String {
    f.history
        .last()
        .and_then(|a| a.verdict.reasons.first())
        .cloned()
        .unwrap_or_else(|| "unspecified".to_owned())
}

/// Writes one terminal record.
pub async fn handle(input: Input, deps: &Deps) -> Result<Output, WorkerError> {
    let now = Utc::now();
    match input {
        Input::Published(f) => {
            let (record, costs) = finished_record(&f, MessageStatus::Approved, now)?;
            // A failed record is an earlier attempt's: a redrive replaces it.
            if deps
                .messages
                .get(&record.event_id)
                .await?
                .is_some_and(|r| r.status != MessageStatus::Failed)
            {
                return Ok(Output {
                    outcome: "published".into(),
                    record_id: record.event_id,
                    record_written: false,
                    event_published: false,
                    generator: Some(record.generator),
                    reason: None,
                });
            }
            deps.events.publish(&announcement(&record, &f)).await?;
            #[cfg(feature = "fault-injection")]
            fault_point("after-approval-put", &record.event_id);
            let mut out = put(deps, &record, costs, "published", None).await?;
            out.event_published = true;
            Ok(out)
        }
        Input::Rejected(f) => {
            let (record, costs) = finished_record(&f, MessageStatus::Rejected, now)?;
            put(deps, &record, costs, "rejected", Some(rejection_reason(&f))).await
        }
        Input::Failed(f) => {
            let (record, costs) = failed_record(&f, now);
            put(deps, &record, costs, "failed", Some(f.error.error.clone())).await
        }
        Input::Skipped(s) => {
            let record = MessageRecord {
                event_id: s.event_id.clone(),
                customer_id: s.customer_id.clone(),
                status: MessageStatus::Skipped,
                message: None,
                recommended_service: None,
                offering: None,
                generator: AgentRef::placeholder(GENERATOR_ID),
                judge: AgentRef::placeholder(JUDGE_ID),
                attempts: Vec::new(),
                total_usage: TokenUsage::default(),
                cost_usd: 0.0,
                latency_ms: latency(s.started_at, now),
                error: Some(format!("skipped: {}", s.reason)),
                created_at: now,
            };
            let out = put(
                deps,
                &record,
                Costs::default(),
                "skipped",
                Some(s.reason.clone()),
            )
            .await?;
            if out.record_written
                && let Some(raw) = &s.event
            {
                count_response(deps, raw).await?;
            }
            Ok(out)
        }
        Input::Quarantined(q) => {
            let record = quarantine_record(&q, now);
            let written = deps.messages.quarantine(&record).await? == PutOutcome::Inserted;
            Ok(Output {
                outcome: "quarantined".into(),
                record_id: record.quarantine_id,
                record_written: written,
                event_published: false,
                generator: None,
                reason: Some(record.reason.as_str().to_owned()),
            })
        }
    }
}

/// Test-only crash point, compiled only with the `fault-injection` feature (never in the Lambda
/// build nor a default build): when `UPSELL_FAULT_POINT` is `<name>:<event id>` or `<name>:*`,
/// the first call that matches prints `UPSELL_FAULT_POINT reached: <name> <event id>` on stderr
/// and blocks its thread for good, so that a test can SIGKILL the process exactly there.
#[cfg(feature = "fault-injection")]
fn fault_point(name: &str, event_id: &str) {
    let Ok(spec) = std::env::var("UPSELL_FAULT_POINT") else {
        return;
    };
    if spec == format!("{name}:{event_id}") || spec == format!("{name}:*") {
        eprintln!("UPSELL_FAULT_POINT reached: {name} {event_id}");
        loop {
            std::thread::park();
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaInvalidDetails {
    reason: RejectReason,
    #[serde(default)]
    event_id: Option<String>,
    problems: Vec<Problem>,
}

/// FNV-1a of the raw text, hex: the quarantine key of an event without a readable id.
fn text_hash(s: &str) -> String {
    format!("raw-{:016x}", upsell_core::hash::fnv1a(s.as_bytes()))
}

/// The SchemaInvalid details in a caught error's Cause. Step Functions (and the local runtime)
/// report a Lambda function error as the JSON `{"errorMessage": ..., "errorType": ...}`, whose
/// `errorMessage` carries the details; a Cause that is the details themselves is accepted too.
fn schema_invalid_details(cause: &str) -> Option<SchemaInvalidDetails> {
    let value: Value = serde_json::from_str(cause).ok()?;
    if let Some(message) = value.get("errorMessage").and_then(Value::as_str)
        && let Ok(details) = serde_json::from_str::<SchemaInvalidDetails>(message)
    {
        return Some(details);
    }
    serde_json::from_value(value).ok()
}

fn quarantine_record(q: &Quarantined, now: DateTime<Utc>) -> QuarantineRecord {
    let raw = serde_json::to_string(&q.event).expect("JSON values serialise");
    let details = q.error.cause.as_deref().and_then(schema_invalid_details);
    let (reason, event_id, errors) = match details {
        Some(d) => (d.reason, d.event_id, d.problems),
        None => (
            RejectReason::SchemaViolation,
            q.event.get("id").and_then(Value::as_str).map(str::to_owned),
            vec![Problem::new(
                "",
                format!(
                    "{}: {}",
                    q.error.error,
                    q.error.cause.as_deref().unwrap_or("no cause given")
                ),
            )],
        ),
    };
    QuarantineRecord {
        quarantine_id: event_id.clone().unwrap_or_else(|| text_hash(&raw)),
        event_id,
        raw,
        reason,
        errors,
        origin: q.origin.clone(),
        quarantined_at: now,
    }
}

#[async_trait::async_trait]
impl Worker for Deps {
    const NAME: &'static str = "publish";
    const STATE: &'static str = "Publish";
    type Input = Input;
    type Output = Output;
    type Error = WorkerError;

    async fn handle(&self, input: Input) -> Result<Output, WorkerError> {
        handle(input, self).await
    }

    /// One outcome per record written: a redelivery that writes nothing counts nothing.
    fn figures(output: &Output, out: &mut Figures) {
        if !output.record_written {
            return;
        }
        let reason = output.reason.as_deref().unwrap_or("unspecified");
        let version = output.generator.as_ref().map(|g| g.version.to_string());
        let agent = output
            .generator
            .as_ref()
            .zip(version.as_deref())
            .map(|(g, v)| [(AGENT_ID, g.agent_id.as_str()), (AGENT_VERSION, v)]);
        match (output.outcome.as_str(), agent) {
            ("published", Some([id, v])) => out.add(&MESSAGES_APPROVED, 1.0, &[id, v]),
            ("rejected", Some([id, v])) => {
                out.add(&MESSAGES_REJECTED, 1.0, &[id, v, (REASON, reason)]);
            }
            ("failed", Some([id, v])) => {
                out.add(&EVENTS_FAILED, 1.0, &[id, v, (ERROR_TYPE, reason)])
            }
            ("skipped", _) => out.add(&EVENTS_SKIPPED, 1.0, &[(REASON, reason)]),
            ("quarantined", _) => out.add(&EVENTS_QUARANTINED, 1.0, &[(REASON, reason)]),
            _ => {}
        }
    }
}

impl StableError for WorkerError {
    fn error_name(&self) -> ErrorName {
        self.error_type()
    }
}
