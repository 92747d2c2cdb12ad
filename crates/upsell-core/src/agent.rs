//! Agent specifications: what the agent registry stores for each version of the Generator and
//! the Judge (prompt templates, model, inference settings, rollout status and traffic weight).
//!
//! JSON field names are camelCase, following the registry example in the requirements.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::validate::Problem;

/// What an agent does in the workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AgentRole {
    /// Writes the upsell message.
    Generator,
    /// Scores a message and approves or rejects it with feedback.
    Judge,
}

/// Lifecycle of an agent version. Normal path: draft -> evaluating -> canary -> production ->
/// retired. A canary (or production version) that a rollout takes out goes to rolled-back, kept
/// apart from a normal retirement; both are final. The rules are [`AgentStatus::can_transition_to`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AgentStatus {
    /// Being written; never receives traffic.
    Draft,
    /// Being evaluated offline on historical data; never receives traffic.
    Evaluating,
    /// Receives a share of live traffic (its `trafficWeight`).
    Canary,
    /// Serves live traffic.
    Production,
    /// Superseded or withdrawn; never receives traffic again.
    Retired,
    /// Taken out by a rollout (its canary or post-promotion checks failed); never receives
    /// traffic again.
    RolledBack,
}

impl AgentStatus {
    /// Whether a version in this status may have a non-zero traffic weight.
    pub fn serves_traffic(self) -> bool {
        matches!(self, AgentStatus::Canary | AgentStatus::Production)
    }

    /// Every status, in lifecycle order.
    pub const ALL: [AgentStatus; 6] = [
        AgentStatus::Draft,
        AgentStatus::Evaluating,
        AgentStatus::Canary,
        AgentStatus::Production,
        AgentStatus::Retired,
        AgentStatus::RolledBack,
    ];

    /// Whether the registry allows moving from `self` to `next` (a different status; a weight
    /// change within canary or production is not a status change).
    ///
    /// draft -> evaluating; evaluating -> draft (sent back), canary, production; canary ->
    /// production, rolled-back; production -> canary (traffic handed back during a rollout),
    /// rolled-back; any live status -> retired. Retired and rolled-back are final: a fix is a new
    /// version.
    pub fn can_transition_to(self, next: AgentStatus) -> bool {
        use AgentStatus::*;
        matches!(
            (self, next),
            (Draft, Evaluating)
                | (Evaluating, Draft)
                | (Evaluating, Canary)
                | (Evaluating, Production)
                | (Canary, Production)
                | (Canary, RolledBack)
                | (Production, Canary)
                | (Production, RolledBack)
                | (Draft | Evaluating | Canary | Production, Retired)
        )
    }

    /// Whether no transition leaves this status.
    pub fn is_final(self) -> bool {
        matches!(self, AgentStatus::Retired | AgentStatus::RolledBack)
    }

    /// The wire name, e.g. `"canary"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Draft => "draft",
            AgentStatus::Evaluating => "evaluating",
            AgentStatus::Canary => "canary",
            AgentStatus::Production => "production",
            AgentStatus::Retired => "retired",
            AgentStatus::RolledBack => "rolled-back",
        }
    }

    /// Parses a wire name (`"rolled-back"`); the error lists the valid names.
    pub fn parse(s: &str) -> Result<AgentStatus, String> {
        AgentStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = AgentStatus::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown status {s:?} (one of {})", names.join(", "))
            })
    }
}

/// Prompt templates, written in minijinja (Jinja2) syntax. Variables available to the templates
/// are documented with the generate and judge workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptTemplates {
    /// System prompt template.
    #[schemars(length(min = 1))]
    pub system: String,
    /// User turn template.
    #[schemars(length(min = 1))]
    pub user: String,
}

/// Model sampling settings, passed to the model provider (Bedrock Converse `inferenceConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InferenceConfig {
    /// Sampling temperature, 0.0 ..= 1.0.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub temperature: f32,
    /// Nucleus sampling cut-off, 0.0 ..= 1.0; provider default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub top_p: Option<f32>,
    /// Maximum number of output tokens, 1 ..= 10000.
    #[schemars(range(min = 1, max = 10_000))]
    pub max_tokens: u32,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        InferenceConfig {
            temperature: 0.7,
            top_p: Some(0.9),
            max_tokens: 1000,
        }
    }
}

/// Observed quality of a version, filled in by offline evaluation and live monitoring.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PerformanceMetrics {
    /// Share of messages the judge approved, 0.0 ..= 1.0.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub approval_rate: f64,
    /// Mean judge score, 0.0 ..= 10.0.
    #[schemars(range(min = 0.0, max = 10.0))]
    pub avg_score: f64,
    /// Number of messages the figures are based on.
    #[serde(default)]
    pub sample_size: u64,
    /// Mean generate+judge attempts per message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg_attempts: Option<f64>,
    /// 95th percentile end-to-end latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_latency_ms: Option<f64>,
    /// Mean model cost per message in US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_per_message_usd: Option<f64>,
    /// When these figures were computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

/// Reference to one agent version, as carried in requests, results and metrics dimensions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentRef {
    /// Agent id, e.g. `upsell-generator`.
    pub agent_id: String,
    /// Semantic version, e.g. `2.1.0`.
    #[serde(with = "semver_lenient")]
    #[schemars(with = "String")]
    pub version: semver::Version,
}

impl AgentRef {
    /// The version 0.0.0 that a terminal record names for an agent that did not run (a
    /// failure before the agent was called, a skipped event): records always name both agents.
    pub fn placeholder(agent_id: &str) -> AgentRef {
        AgentRef {
            agent_id: agent_id.to_owned(),
            version: semver::Version::new(0, 0, 0),
        }
    }

    /// Whether this is [`AgentRef::placeholder`]: the agent did not run.
    pub fn is_placeholder(&self) -> bool {
        self.version == semver::Version::new(0, 0, 0)
    }
}

impl std::fmt::Display for AgentRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.agent_id, self.version)
    }
}

/// One version of an agent as stored in the registry (key: `agentId` + `version`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSpec {
    /// Stable agent id, lower-case kebab-case, e.g. `upsell-generator`.
    #[schemars(length(min = 1, max = 64))]
    pub agent_id: String,
    /// Semantic version. `"2.1"` and `"v2.1"` are accepted on input and stored as `2.1.0`.
    #[serde(with = "semver_lenient")]
    #[schemars(with = "String")]
    pub version: semver::Version,
    /// Generator or judge.
    pub role: AgentRole,
    /// What changed in this version, for humans.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Prompt templates (minijinja).
    pub prompt: PromptTemplates,
    /// Model id as the provider knows it, e.g. `amazon.nova-pro-v1:0`.
    #[schemars(length(min = 1, max = 200))]
    pub model_id: String,
    /// Sampling settings.
    pub config: InferenceConfig,
    /// Generate/judge attempts before a message is given up as rejected, 1 ..= 10
    /// (the state machine's feedback loop reads it).
    #[schemars(range(min = 1, max = 10))]
    pub max_attempts: u32,
    /// Judge score (0..=10) at or above which a message is approved; judges only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub approval_threshold: Option<u8>,
    /// Lifecycle status.
    pub status: AgentStatus,
    /// Percentage of live traffic routed to this version, 0 ..= 100. Non-zero only for canary
    /// and production; the weights of one agent's serving versions add up to 100.
    #[schemars(range(min = 0, max = 100))]
    pub traffic_weight: u8,
    /// When this version was registered.
    pub created_at: DateTime<Utc>,
    /// Observed quality; absent until evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<PerformanceMetrics>,
}

impl AgentSpec {
    /// The `agentId@version` reference.
    pub fn agent_ref(&self) -> AgentRef {
        AgentRef {
            agent_id: self.agent_id.clone(),
            version: self.version.clone(),
        }
    }

    /// Checks the rules a schema cannot express; returns every problem found.
    pub fn check(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let id_ok = !self.agent_id.is_empty()
            && self
                .agent_id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !id_ok {
            p.push(Problem::new(
                "/agentId",
                "must be non-empty lower-case kebab-case (a-z, 0-9, -)",
            ));
        }
        if self.traffic_weight > 100 {
            p.push(Problem::new("/trafficWeight", "must be between 0 and 100"));
        }
        if self.traffic_weight > 0 && !self.status.serves_traffic() {
            p.push(Problem::new(
                "/trafficWeight",
                format!(
                    "must be 0 while status is {}; only canary and production versions get traffic",
                    self.status.as_str()
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.config.temperature) {
            p.push(Problem::new(
                "/config/temperature",
                "must be between 0.0 and 1.0",
            ));
        }
        if let Some(t) = self.config.top_p
            && !(0.0..=1.0).contains(&t)
        {
            p.push(Problem::new("/config/topP", "must be between 0.0 and 1.0"));
        }
        if !(1..=10_000).contains(&self.config.max_tokens) {
            p.push(Problem::new(
                "/config/maxTokens",
                "must be between 1 and 10000",
            ));
        }
        if !(1..=10).contains(&self.max_attempts) {
            p.push(Problem::new("/maxAttempts", "must be between 1 and 10"));
        }
        match (self.role, self.approval_threshold) {
            (AgentRole::Judge, Some(t)) if t > 10 => {
                p.push(Problem::new(
                    "/approvalThreshold",
                    "must be between 0 and 10",
                ));
            }
            (AgentRole::Generator, Some(_)) => p.push(Problem::new(
                "/approvalThreshold",
                "only judges have an approval threshold",
            )),
            _ => {}
        }
        if self.prompt.system.trim().is_empty() {
            p.push(Problem::new("/prompt/system", "must not be blank"));
        }
        if self.prompt.user.trim().is_empty() {
            p.push(Problem::new("/prompt/user", "must not be blank"));
        }
        p
    }
}

/// Parses a version leniently: `2`, `2.1`, `v2.1.3`, `2.1.0-rc.1`.
pub fn parse_version(s: &str) -> Result<semver::Version, semver::Error> {
    let s = s.trim();
    let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
    let (core, rest) = match s.find(['-', '+']) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let dots = core.matches('.').count();
    let padded = match dots {
        0 => format!("{core}.0.0{rest}"),
        1 => format!("{core}.0{rest}"),
        _ => s.to_owned(),
    };
    semver::Version::parse(&padded)
}

/// Serde adapter: lenient on input ([`parse_version`]), canonical semver on output.
pub mod semver_lenient {
    use super::*;

    /// Serialises the canonical form.
    pub fn serialize<S: Serializer>(v: &semver::Version, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    /// Parses leniently.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<semver::Version, D::Error> {
        let s = String::deserialize(d)?;
        parse_version(&s)
            .map_err(|e| serde::de::Error::custom(format!("invalid version {s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_versions() {
        assert_eq!(parse_version("2.1").unwrap().to_string(), "2.1.0");
        assert_eq!(parse_version("v3").unwrap().to_string(), "3.0.0");
        assert_eq!(parse_version("1.2-rc.1").unwrap().to_string(), "1.2.0-rc.1");
        assert!(parse_version("two").is_err());
    }

    #[test]
    fn requirements_example_shape_parses() {
        let v = serde_json::json!({
            "agentId": "upsell-generator", "version": "2.1", "role": "generator",
            "prompt": {"system": "You write upsells.", "user": "{{ customer.firstName }}"},
            "modelId": "amazon.nova-pro-v1:0",
            "config": {"temperature": 0.7, "maxTokens": 1000},
            "maxAttempts": 3, "status": "production", "trafficWeight": 100,
            "createdAt": "2025-01-01T00:00:00Z",
            "performance": {"approvalRate": 0.85, "avgScore": 8.2}
        });
        let spec: AgentSpec = serde_json::from_value(v).unwrap();
        assert_eq!(spec.version, semver::Version::new(2, 1, 0));
        assert!(spec.check().is_empty(), "{:?}", spec.check());
        assert_eq!(serde_json::to_value(&spec).unwrap()["version"], "2.1.0");
    }

    #[test]
    fn status_rules() {
        use AgentStatus::*;
        assert!(Canary.can_transition_to(Retired));
        assert!(Canary.can_transition_to(RolledBack));
        assert!(!Draft.can_transition_to(Production));
        assert!(!Draft.can_transition_to(RolledBack));
        assert!(!Evaluating.can_transition_to(RolledBack));
        // Final statuses have no way out, and no status moves to itself.
        for from in AgentStatus::ALL {
            for to in AgentStatus::ALL {
                if from.is_final() || from == to {
                    assert!(!from.can_transition_to(to), "{from:?} -> {to:?}");
                }
            }
        }
    }

    #[test]
    fn status_names_round_trip() {
        for st in AgentStatus::ALL {
            assert_eq!(AgentStatus::parse(st.as_str()), Ok(st));
            assert_eq!(serde_json::to_value(st).unwrap(), st.as_str());
        }
        assert!(
            AgentStatus::parse("live")
                .unwrap_err()
                .contains("rolled-back")
        );
    }
}
