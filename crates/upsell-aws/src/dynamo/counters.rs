//! [`VersionCounters`] on DynamoDB, in the version-counters table
//! (`UPSELL_VERSION_COUNTERS_TABLE`). One item per agent version: `pk = AGENT#<agent id>`,
//! `sk = VERSION#<version>`, `agentId`, `version`, and number attributes added to with one
//! atomic `ADD` update per delta: `approvals`, `rejections`, `errors`, `scoreSum`,
//! `scoreCount`, `costNanoUsd`, the responses to the version's approved messages (`accepted`,
//! `declined`, `noAnswer`, `optedOut`) and `lat<i>` for latency bucket `i`
//! (`upsell_core::counters::latency_bucket`). Concurrent adds all count; reads are strongly
//! consistent.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use semver::Version;
use upsell_core::agent::AgentRef;
use upsell_core::counters::{CounterDelta, LATENCY_BUCKETS, VersionCounters, VersionCounts};
use upsell_core::ports::PortError;

use super::{Item, get_s, key, n, s};
use crate::error::port_error;

/// The counters' number attributes, in [`VersionCounts`] order, then the responses in
/// `UpsellResponse::ALL` order.
const SUMS: [&str; 10] = [
    "approvals",
    "rejections",
    "errors",
    "scoreSum",
    "scoreCount",
    "costNanoUsd",
    "accepted",
    "declined",
    "noAnswer",
    "optedOut",
];

/// The partition of an agent.
pub fn agent_pk(agent_id: &str) -> String {
    format!("AGENT#{agent_id}")
}

/// The sort key of a version.
pub fn version_sk(version: &Version) -> String {
    format!("VERSION#{version}")
}

/// The attribute of latency bucket `i`.
pub fn latency_attr(i: usize) -> String {
    format!("lat{i}")
}

/// Per-version counters in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoVersionCounters {
    client: Client,
    table: String,
}

impl DynamoVersionCounters {
    /// The counters on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoVersionCounters {
            client,
            table: table.into(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }
}

fn number(item: &Item, attr: &str, table: &str) -> Result<u64, PortError> {
    match item.get(attr) {
        None => Ok(0),
        Some(AttributeValue::N(raw)) => raw.parse().map_err(|_| {
            PortError::Other(format!(
                "item {:?}/{:?} of table {table}: `{attr}` = {raw} is not a count",
                get_s(item, "pk").unwrap_or("?"),
                get_s(item, "sk").unwrap_or("?")
            ))
        }),
        Some(other) => Err(PortError::Other(format!(
            "item {:?}/{:?} of table {table}: `{attr}` is not a number: {other:?}",
            get_s(item, "pk").unwrap_or("?"),
            get_s(item, "sk").unwrap_or("?")
        ))),
    }
}

fn counts(item: &Item, table: &str) -> Result<VersionCounts, PortError> {
    let [
        approvals,
        rejections,
        errors,
        score_sum,
        score_count,
        cost_nano_usd,
        accepted,
        declined,
        no_answer,
        opted_out,
    ] = SUMS.map(|attr| number(item, attr, table));
    let mut c = VersionCounts {
        approvals: approvals?,
        rejections: rejections?,
        errors: errors?,
        score_sum: score_sum?,
        score_count: score_count?,
        cost_nano_usd: cost_nano_usd?,
        responses: [accepted?, declined?, no_answer?, opted_out?],
        ..VersionCounts::default()
    };
    for (i, slot) in c.latency.iter_mut().enumerate() {
        *slot = number(item, &latency_attr(i), table)?;
    }
    Ok(c)
}

#[async_trait]
impl VersionCounters for DynamoVersionCounters {
    async fn add(&self, agent: &AgentRef, delta: &CounterDelta) -> Result<(), PortError> {
        let values = [
            delta.approvals,
            delta.rejections,
            delta.errors,
            delta.score_sum,
            delta.score_count,
            delta.cost_nano_usd,
            delta.responses[0],
            delta.responses[1],
            delta.responses[2],
            delta.responses[3],
        ];
        let mut names = HashMap::from([
            ("#agentId".to_owned(), "agentId".to_owned()),
            ("#version".to_owned(), "version".to_owned()),
        ]);
        let mut vals = HashMap::from([
            (":agentId".to_owned(), s(&agent.agent_id)),
            (":version".to_owned(), s(agent.version.to_string())),
        ]);
        let mut adds = Vec::new();
        for (i, (attr, value)) in SUMS.iter().zip(values).enumerate() {
            names.insert(format!("#s{i}"), (*attr).to_owned());
            vals.insert(format!(":s{i}"), n(value));
            adds.push(format!("#s{i} :s{i}"));
        }
        if let Some(b) = delta.latency_bucket {
            names.insert("#lat".into(), latency_attr(b.min(LATENCY_BUCKETS - 1)));
            vals.insert(":one".into(), n(1));
            adds.push("#lat :one".into());
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(
                agent_pk(&agent.agent_id),
                version_sk(&agent.version),
            )))
            .update_expression(format!(
                "SET #agentId = :agentId, #version = :version ADD {}",
                adds.join(", ")
            ))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(vals))
            .send()
            .await
            .map_err(|e| port_error("DynamoDB UpdateItem (version counters)", e))?;
        Ok(())
    }

    async fn read(&self, agent: &AgentRef) -> Result<VersionCounts, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(
                agent_pk(&agent.agent_id),
                version_sk(&agent.version),
            )))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("DynamoDB GetItem (version counters)", e))?;
        match out.item {
            Some(item) => counts(&item, &self.table),
            None => Ok(VersionCounts::default()),
        }
    }

    async fn versions(&self, agent_id: &str) -> Result<Vec<(Version, VersionCounts)>, PortError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :v)")
                .set_expression_attribute_names(Some(HashMap::from([
                    ("#pk".to_owned(), "pk".to_owned()),
                    ("#sk".to_owned(), "sk".to_owned()),
                ])))
                .set_expression_attribute_values(Some(HashMap::from([
                    (":pk".to_owned(), s(agent_pk(agent_id))),
                    (":v".to_owned(), s("VERSION#")),
                ])))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| port_error("DynamoDB Query (version counters)", e))?;
            for item in page.items.unwrap_or_default() {
                let raw = get_s(&item, "version").unwrap_or_default();
                let version = Version::parse(raw).map_err(|e| {
                    PortError::Other(format!(
                        "table {}: agent {agent_id} has an unreadable version {raw:?}: {e}",
                        self.table
                    ))
                })?;
                out.push((version, counts(&item, &self.table)?));
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}
