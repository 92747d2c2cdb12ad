//! The local [`DriftSource`]: the events the local runtime has run (each execution's input in
//! the execution store), message outcomes from the message store, both selected by the events'
//! own time. Inputs that are not valid events (quarantined ones) are left out; an event run
//! twice (redelivery, resume) counts once.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use upsell_core::drift::DriftSource;
use upsell_core::events::CustomerEvent;
use upsell_core::message::{MessageRecord, MessageStatus};
use upsell_core::ports::{MessageQuery, MessageStore, PortError};

use crate::history::{ExecutionFilter, ExecutionStore};
use crate::messages::SqliteMessageStore;

/// Page size when reading message records.
const PAGE: usize = 1_000;

/// Drift windows from the local stores.
#[derive(Debug, Clone)]
pub struct SqliteDriftSource {
    executions: Arc<ExecutionStore>,
    messages: Arc<SqliteMessageStore>,
}

impl SqliteDriftSource {
    /// The source over these stores.
    pub fn new(executions: Arc<ExecutionStore>, messages: Arc<SqliteMessageStore>) -> Self {
        SqliteDriftSource {
            executions,
            messages,
        }
    }

    fn events(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<CustomerEvent>, PortError> {
        let all = self.executions.list(&ExecutionFilter {
            limit: Some(usize::MAX / 2),
            ..ExecutionFilter::default()
        })?;
        // Oldest first, so that the first run of an event is the one kept.
        Ok(upsell_core::drift::select_events(
            all.into_iter().rev().filter_map(|e| e.input),
            from,
            to,
        ))
    }
}

#[async_trait]
impl DriftSource for SqliteDriftSource {
    async fn events_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<CustomerEvent>, PortError> {
        self.events(from, to)
    }

    async fn records_of(&self, event_ids: &[String]) -> Result<Vec<MessageRecord>, PortError> {
        let ids: HashSet<&str> = event_ids.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        for status in [MessageStatus::Approved, MessageStatus::Rejected] {
            let mut after = None;
            loop {
                let page = self
                    .messages
                    .list(&MessageQuery {
                        status: Some(status),
                        after_event_id: after.clone(),
                        limit: PAGE,
                        ..MessageQuery::default()
                    })
                    .await?;
                after = page.last().map(|r| r.event_id.clone());
                let full = page.len() == PAGE;
                out.extend(
                    page.into_iter()
                        .filter(|r| ids.contains(r.event_id.as_str())),
                );
                if !full {
                    break;
                }
            }
        }
        Ok(out)
    }
}
