//! The agent registry's domain, written once for both stores (DynamoDB in AWS, the local table
//! store on a laptop): which versions serve traffic ([`Routing`]), the item layout of the
//! registry table ([`layout`]), the record of every transition ([`TransitionRecord`]), and the
//! plans that register or move a version ([`plan_register`], [`plan_transition`]).
//!
//! An adapter reads an agent's items, hands them to [`AgentState::from_items`], asks for a plan,
//! and executes the plan's conditional puts as one transaction. It translates items and errors;
//! every rule lives here.
//!
//! Items of one agent, all under `pk = AGENT#<agent id>` (sort keys in this order):
//! - `HISTORY#<sequence, 12 digits>`: one per transition (registration included): `agentId`,
//!   `version`, `at`, `from` (absent at registration), `to`, `record` (the [`TransitionRecord`]
//!   as JSON);
//! - `ROUTING`: `agentId`, `productionVersion` (absent when none), `canaryVersion` (absent when
//!   none), `canaryWeight` (N), `revision` (N), `updatedAt`. The state machine's LoadRouting
//!   state reads it with `dynamodb:getItem`;
//! - `TEMPLATE#sha256:<hex>`: `sha256`, `text`: a prompt template, stored once per content;
//! - `VERSION#<semver>`: `agentId`, `version`, `status`, `trafficWeight` (N), `revision` (N),
//!   `systemTemplate` and `userTemplate` (the templates' hashes), `spec` (the AgentSpec as JSON
//!   without its prompt).
//!
//! Every register and transition bumps the routing item's revision under a condition on the
//! old one, and the new revision numbers the history item written in the same transaction: two
//! writers of one agent cannot both win, and the history has no gaps or duplicates.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use semver::Version;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::agent::{AgentSpec, AgentStatus, PromptTemplates, semver_lenient};
use crate::ports::PortError;

/// One attribute value of a registry item: the two DynamoDB types the layout uses. Serialises
/// as DynamoDB JSON (`{"S": "..."}`, `{"N": "12"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Attr {
    /// A string.
    S(String),
    /// A number, in its decimal text form.
    N(String),
}

/// A registry item: attribute name to value.
pub type Item = BTreeMap<String, Attr>;

/// Key names, key values and attribute names of the registry table.
pub mod layout {
    use semver::Version;

    /// Partition key attribute.
    pub const PK: &str = "pk";
    /// Sort key attribute.
    pub const SK: &str = "sk";
    /// Sort key of the routing item.
    pub const ROUTING_SK: &str = "ROUTING";
    /// Sort key prefix of version items.
    pub const VERSION_PREFIX: &str = "VERSION#";
    /// Sort key prefix of template items.
    pub const TEMPLATE_PREFIX: &str = "TEMPLATE#";
    /// Sort key prefix of history items.
    pub const HISTORY_PREFIX: &str = "HISTORY#";
    /// The smallest sort key of the items that make up an agent's current state (routing,
    /// templates, versions): `sk >= STATE_FROM` skips the history, which sorts first.
    pub const STATE_FROM: &str = ROUTING_SK;

    /// Partition key of an agent's items.
    pub fn agent_pk(agent_id: &str) -> String {
        format!("AGENT#{agent_id}")
    }

    /// Sort key of a version item.
    pub fn version_sk(version: &Version) -> String {
        format!("{VERSION_PREFIX}{version}")
    }

    /// Sort key of a template item (`hash` as [`super::template_hash`] makes it).
    pub fn template_sk(hash: &str) -> String {
        format!("{TEMPLATE_PREFIX}{hash}")
    }

    /// Sort key of a history item: zero-padded so the text order is the sequence order.
    pub fn history_sk(sequence: u64) -> String {
        format!("{HISTORY_PREFIX}{sequence:012}")
    }
}

use layout::*;

/// The content hash under which a template is stored: `sha256:<64 hex digits>`.
pub fn template_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn s(v: impl Into<String>) -> Attr {
    Attr::S(v.into())
}

fn n(v: impl ToString) -> Attr {
    Attr::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, attr: &str) -> Option<&'a str> {
    match item.get(attr)? {
        Attr::S(v) => Some(v),
        Attr::N(_) => None,
    }
}

fn get_n<T: std::str::FromStr>(item: &Item, attr: &str) -> Option<T> {
    match item.get(attr)? {
        Attr::N(v) => v.parse().ok(),
        Attr::S(_) => None,
    }
}

fn keyed(agent_id: &str, sk: String) -> Item {
    Item::from([
        (PK.to_owned(), s(layout::agent_pk(agent_id))),
        (SK.to_owned(), s(sk)),
    ])
}

fn corrupt(item: &Item, what: impl std::fmt::Display) -> PortError {
    PortError::Other(format!(
        "corrupt registry item (pk={:?}, sk={:?}): {what}",
        get_s(item, PK).unwrap_or("?"),
        get_s(item, SK).unwrap_or("?")
    ))
}

/// The sort key of an item, if it has one.
pub fn sort_key(item: &Item) -> Option<&str> {
    get_s(item, SK)
}

/// Which versions of an agent serve traffic: what the routing item holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Routing {
    /// The production version (the one with the highest weight if several).
    pub production_version: Option<Version>,
    /// The canary version, if any (the one with the highest weight if several).
    pub canary_version: Option<Version>,
    /// Percent of customers (by sticky bucket) routed to the canary; 0 without a canary.
    pub canary_weight: u8,
}

impl Routing {
    /// Routing derived from an agent's versions: the production and canary versions with the
    /// highest traffic weight (ties: the higher version).
    pub fn of<'a>(specs: impl IntoIterator<Item = &'a AgentSpec>) -> Routing {
        let mut production: Option<&AgentSpec> = None;
        let mut canary: Option<&AgentSpec> = None;
        let better = |cur: Option<&AgentSpec>, s: &'a AgentSpec| {
            cur.is_none_or(|c| (c.traffic_weight, &c.version) < (s.traffic_weight, &s.version))
        };
        for spec in specs {
            match spec.status {
                AgentStatus::Production if better(production, spec) => production = Some(spec),
                AgentStatus::Canary if better(canary, spec) => canary = Some(spec),
                _ => {}
            }
        }
        Routing {
            production_version: production.map(|p| p.version.clone()),
            canary_version: canary.map(|c| c.version.clone()),
            canary_weight: canary.map_or(0, |c| c.traffic_weight),
        }
    }

    /// The routing item of `agent_id` at `revision`.
    pub fn item(&self, agent_id: &str, revision: u64, now: DateTime<Utc>) -> Item {
        let mut item = keyed(agent_id, ROUTING_SK.to_owned());
        item.insert("agentId".into(), s(agent_id));
        item.insert("canaryWeight".into(), n(self.canary_weight));
        item.insert("revision".into(), n(revision));
        item.insert("updatedAt".into(), s(now.to_rfc3339()));
        if let Some(v) = &self.production_version {
            item.insert("productionVersion".into(), s(v.to_string()));
        }
        if let Some(v) = &self.canary_version {
            item.insert("canaryVersion".into(), s(v.to_string()));
        }
        item
    }

    /// Reads a routing item; `None` (no production, no canary) when there is none.
    pub fn from_item(item: Option<&Item>) -> Result<Routing, PortError> {
        let Some(item) = item else {
            return Ok(Routing::default());
        };
        let version = |attr: &str| {
            get_s(item, attr)
                .map(|v| {
                    Version::parse(v)
                        .map_err(|e| corrupt(item, format!("invalid {attr} {v:?}: {e}")))
                })
                .transpose()
        };
        Ok(Routing {
            production_version: version("productionVersion")?,
            canary_version: version("canaryVersion")?,
            canary_weight: get_n(item, "canaryWeight").unwrap_or(0),
        })
    }
}

/// What kind of actor made a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ActorKind {
    /// A person, through the CLI; the id is their user name.
    User,
    /// A Step Functions execution (a rollout or an evaluation); the id is its execution ARN
    /// (locally, the local execution id).
    Execution,
    /// Seeding: the seed agents loaded on deploy (the id is the CloudFormation stack) or on a
    /// local first run (the id is the local home directory).
    Seed,
    /// Another program calling the registry (e.g. the registry Lambda invoked directly); the id
    /// names it.
    Service,
}

/// Who or what made a transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Actor {
    /// What kind of actor.
    pub kind: ActorKind,
    /// Who exactly: user name, execution ARN, stack id, program name.
    #[schemars(length(min = 1))]
    pub id: String,
}

impl Actor {
    /// An actor of `kind` named `id`.
    pub fn new(kind: ActorKind, id: impl Into<String>) -> Actor {
        Actor {
            kind,
            id: id.into(),
        }
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            ActorKind::User => "user",
            ActorKind::Execution => "execution",
            ActorKind::Seed => "seed",
            ActorKind::Service => "service",
        };
        write!(f, "{kind} {}", self.id)
    }
}

/// A request to move one version to a status and traffic weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransitionRequest {
    /// The status to move to.
    pub to: AgentStatus,
    /// The traffic weight afterwards, 0 ..= 100 (non-zero only for canary and production).
    #[schemars(range(min = 0, max = 100))]
    pub weight: u8,
    /// Why, for the history (e.g. "evaluation passed: report eval-2026-05-01").
    #[schemars(length(min = 1))]
    pub reason: String,
    /// Who or what asks.
    pub actor: Actor,
}

/// Registration as a request: who registers and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRequest {
    /// Why, for the history (e.g. "registered from agents/upsell-generator/1.1.0").
    #[schemars(length(min = 1))]
    pub reason: String,
    /// Who or what registers.
    pub actor: Actor,
}

/// One transition of one version, as the registry's history keeps it. Registration is the first
/// transition of a version (`from` absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransitionRecord {
    /// Agent id.
    pub agent_id: String,
    /// The version that moved.
    #[serde(with = "semver_lenient")]
    #[schemars(with = "String")]
    pub version: Version,
    /// Position in the agent's history (1, 2, ...; shared by all versions of the agent).
    pub sequence: u64,
    /// When.
    pub at: DateTime<Utc>,
    /// Status before; absent for a registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<AgentStatus>,
    /// Status after.
    pub to: AgentStatus,
    /// Traffic weight before (0 for a registration).
    pub from_weight: u8,
    /// Traffic weight after.
    pub to_weight: u8,
    /// Why.
    pub reason: String,
    /// Who or what.
    pub actor: Actor,
}

impl TransitionRecord {
    /// The history item of this record.
    pub fn item(&self) -> Result<Item, PortError> {
        let mut item = keyed(&self.agent_id, history_sk(self.sequence));
        item.insert("agentId".into(), s(&self.agent_id));
        item.insert("version".into(), s(self.version.to_string()));
        item.insert("at".into(), s(self.at.to_rfc3339()));
        if let Some(from) = self.from {
            item.insert("from".into(), s(from.as_str()));
        }
        item.insert("to".into(), s(self.to.as_str()));
        let json = serde_json::to_string(self)
            .map_err(|e| PortError::Invalid(format!("transition record: {e}")))?;
        item.insert("record".into(), s(json));
        Ok(item)
    }

    /// Reads a history item.
    pub fn from_item(item: &Item) -> Result<TransitionRecord, PortError> {
        let json = get_s(item, "record").ok_or_else(|| corrupt(item, "no `record` attribute"))?;
        serde_json::from_str(json).map_err(|e| corrupt(item, e))
    }
}

/// Reads the history items among `items` (others are ignored), in sequence order.
pub fn history_from_items<'a>(
    items: impl IntoIterator<Item = &'a Item>,
) -> Result<Vec<TransitionRecord>, PortError> {
    let mut out = items
        .into_iter()
        .filter(|i| sort_key(i).is_some_and(|sk| sk.starts_with(HISTORY_PREFIX)))
        .map(TransitionRecord::from_item)
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|r| r.sequence);
    Ok(out)
}

/// A version as stored, with the revision its conditional writes check.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVersion {
    /// The spec, templates included.
    pub spec: AgentSpec,
    /// Bumped on every write of the version item.
    pub revision: u64,
}

/// The version item of `spec` at `revision`, and the two template items it refers to.
pub fn version_items(spec: &AgentSpec, revision: u64) -> Result<(Item, [Item; 2]), PortError> {
    let mut body = serde_json::to_value(spec)
        .map_err(|e| PortError::Invalid(format!("agent spec is not serialisable: {e}")))?;
    if let Some(obj) = body.as_object_mut() {
        obj.remove("prompt");
    }
    let system = template_hash(&spec.prompt.system);
    let user = template_hash(&spec.prompt.user);
    let mut item = keyed(&spec.agent_id, version_sk(&spec.version));
    item.insert("agentId".into(), s(&spec.agent_id));
    item.insert("version".into(), s(spec.version.to_string()));
    item.insert("status".into(), s(spec.status.as_str()));
    item.insert("trafficWeight".into(), n(spec.traffic_weight));
    item.insert("revision".into(), n(revision));
    item.insert("systemTemplate".into(), s(&system));
    item.insert("userTemplate".into(), s(&user));
    item.insert("spec".into(), s(body.to_string()));
    let template = |hash: String, text: &str| {
        let mut t = keyed(&spec.agent_id, template_sk(&hash));
        t.insert("sha256".into(), s(hash));
        t.insert("text".into(), s(text));
        t
    };
    Ok((
        item,
        [
            template(system, &spec.prompt.system),
            template(user, &spec.prompt.user),
        ],
    ))
}

/// An agent's current state as read from its items: versions (templates resolved) in version
/// order, and the routing item's revision.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentState {
    /// Agent id.
    pub agent_id: String,
    /// Every version, oldest first (semver order).
    pub versions: Vec<StoredVersion>,
    /// The routing item's revision; `None` before the first registration.
    pub routing_revision: Option<u64>,
    /// The hashes of the templates already stored.
    pub templates: Vec<String>,
    /// The routing item as stored.
    pub routing: Routing,
}

impl AgentState {
    /// Reads an agent's items (any order; history items are ignored).
    pub fn from_items<'a>(
        agent_id: &str,
        items: impl IntoIterator<Item = &'a Item>,
    ) -> Result<AgentState, PortError> {
        let mut templates: HashMap<&str, &str> = HashMap::new();
        let mut versions = Vec::new();
        let mut state = AgentState {
            agent_id: agent_id.to_owned(),
            ..AgentState::default()
        };
        for item in items {
            match sort_key(item) {
                Some(ROUTING_SK) => {
                    state.routing_revision = Some(get_n(item, "revision").unwrap_or(0));
                    state.routing = Routing::from_item(Some(item))?;
                }
                Some(sk) if sk.starts_with(TEMPLATE_PREFIX) => {
                    let text =
                        get_s(item, "text").ok_or_else(|| corrupt(item, "no `text` attribute"))?;
                    templates.insert(&sk[TEMPLATE_PREFIX.len()..], text);
                }
                Some(sk) if sk.starts_with(VERSION_PREFIX) => versions.push(item),
                _ => {}
            }
        }
        for item in versions {
            let template = |attr: &str| -> Result<String, PortError> {
                let hash = get_s(item, attr)
                    .ok_or_else(|| corrupt(item, format!("no `{attr}` attribute")))?;
                templates
                    .get(hash)
                    .map(|t| (*t).to_owned())
                    .ok_or_else(|| corrupt(item, format!("template {hash} is missing")))
            };
            let prompt = PromptTemplates {
                system: template("systemTemplate")?,
                user: template("userTemplate")?,
            };
            let json = get_s(item, "spec").ok_or_else(|| corrupt(item, "no `spec` attribute"))?;
            let mut body: serde_json::Value =
                serde_json::from_str(json).map_err(|e| corrupt(item, e))?;
            body["prompt"] = serde_json::to_value(&prompt).map_err(|e| corrupt(item, e))?;
            let spec: AgentSpec = serde_json::from_value(body).map_err(|e| corrupt(item, e))?;
            state.versions.push(StoredVersion {
                spec,
                revision: get_n(item, "revision").unwrap_or(0),
            });
        }
        state.templates = templates.keys().map(|k| (*k).to_owned()).collect();
        state.templates.sort();
        state
            .versions
            .sort_by(|a, b| a.spec.version.cmp(&b.spec.version));
        Ok(state)
    }

    /// One version, if registered.
    pub fn version(&self, version: &Version) -> Option<&StoredVersion> {
        self.versions.iter().find(|v| &v.spec.version == version)
    }

    /// The specs, oldest version first.
    pub fn specs(&self) -> Vec<AgentSpec> {
        self.versions.iter().map(|v| v.spec.clone()).collect()
    }

    /// The sequence number the next history record gets.
    fn next_sequence(&self) -> u64 {
        self.routing_revision.map_or(1, |r| r + 1)
    }
}

/// Groups items of many agents (a table scan) by agent and reads each agent's versions; the
/// result is ordered by agent id, then version.
pub fn specs_from_items<'a>(
    items: impl IntoIterator<Item = &'a Item>,
) -> Result<Vec<AgentSpec>, PortError> {
    let mut by_agent: BTreeMap<&str, Vec<&Item>> = BTreeMap::new();
    for item in items {
        if let Some(pk) = get_s(item, PK)
            && let Some(id) = pk.strip_prefix("AGENT#")
        {
            by_agent.entry(id).or_default().push(item);
        }
    }
    let mut out = Vec::new();
    for (id, items) in by_agent {
        out.extend(AgentState::from_items(id, items)?.specs());
    }
    Ok(out)
}

/// The condition a put is written under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// The item must not exist (`attribute_not_exists(pk)`).
    Absent,
    /// The item's `revision` must be this (`revision = :rev`).
    Revision(u64),
    /// The item must not exist or already hold the same content (content-addressed templates:
    /// `attribute_not_exists(pk) OR sha256 = :hash`).
    AbsentOrSame,
}

/// One conditional put of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Put {
    /// The whole item.
    pub item: Item,
    /// Its condition.
    pub guard: Guard,
}

/// The writes that register or move a version, to be executed as one transaction. The first put
/// is always the version item; when its guard fails the version was registered or changed
/// meanwhile. Any other failed guard means another writer of the agent won: read again and
/// re-plan.
#[derive(Debug, Clone, PartialEq)]
pub struct WritePlan {
    /// Conditional puts, version item first.
    pub puts: Vec<Put>,
    /// The version as it will be stored.
    pub spec: AgentSpec,
    /// The history record written with it.
    pub record: TransitionRecord,
}

/// The outcome of [`plan_transition`].
#[derive(Debug, Clone, PartialEq)]
pub enum Planned {
    /// The version is already in the requested status and weight: nothing to write (a repeated
    /// request, e.g. a retried rollout step, changes nothing and records nothing).
    Unchanged(Box<AgentSpec>),
    /// Write this.
    Write(Box<WritePlan>),
}

fn invalid_spec(spec: &AgentSpec) -> Result<(), PortError> {
    let problems = spec.check();
    if problems.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
    Err(PortError::Invalid(format!(
        "agent {}@{} is invalid: {}",
        spec.agent_id,
        spec.version,
        list.join("; ")
    )))
}

fn check_why(reason: &str, actor: &Actor) -> Result<(), PortError> {
    if reason.trim().is_empty() {
        return Err(PortError::Invalid(
            "a transition needs a reason (why it is made), for the history".into(),
        ));
    }
    if actor.id.trim().is_empty() {
        return Err(PortError::Invalid(
            "a transition needs an actor id (user name, execution ARN, stack or program)".into(),
        ));
    }
    Ok(())
}

/// The not-found error of a version.
pub fn not_registered(agent_id: &str, version: &Version) -> PortError {
    PortError::NotFound(format!("agent {agent_id}@{version} is not registered"))
}

/// The conflict error of registering a version twice.
pub fn already_registered(agent_id: &str, version: &Version) -> PortError {
    PortError::Conflict(format!(
        "agent {agent_id}@{version} is already registered; versions are immutable, register a new version"
    ))
}

/// Builds the writes that finish a plan: the routing item and the history record.
fn finish(
    state: &AgentState,
    mut puts: Vec<Put>,
    spec: AgentSpec,
    record: TransitionRecord,
    now: DateTime<Utc>,
) -> Result<WritePlan, PortError> {
    let routing = Routing::of(
        state
            .versions
            .iter()
            .map(|v| &v.spec)
            .filter(|v| v.version != spec.version)
            .chain([&spec]),
    );
    puts.push(Put {
        item: routing.item(&state.agent_id, record.sequence, now),
        guard: state
            .routing_revision
            .map_or(Guard::Absent, Guard::Revision),
    });
    puts.push(Put {
        item: record.item()?,
        guard: Guard::Absent,
    });
    Ok(WritePlan { puts, spec, record })
}

/// Plans the registration of `spec` (any valid status: the seeds arrive in production).
/// `PortError::Conflict` when the version exists, `PortError::Invalid` when the spec or the
/// request is not valid.
pub fn plan_register(
    state: &AgentState,
    spec: &AgentSpec,
    request: &RegisterRequest,
    now: DateTime<Utc>,
) -> Result<WritePlan, PortError> {
    invalid_spec(spec)?;
    check_why(&request.reason, &request.actor)?;
    if spec.agent_id != state.agent_id {
        return Err(PortError::Invalid(format!(
            "spec of agent {} planned against agent {}",
            spec.agent_id, state.agent_id
        )));
    }
    if state.version(&spec.version).is_some() {
        return Err(already_registered(&spec.agent_id, &spec.version));
    }
    let (version, templates) = version_items(spec, 1)?;
    let mut puts = vec![Put {
        item: version,
        guard: Guard::Absent,
    }];
    let mut seen: Vec<&str> = state.templates.iter().map(String::as_str).collect();
    for t in &templates {
        let hash = get_s(t, "sha256").unwrap_or_default();
        if !seen.contains(&hash) {
            seen.push(hash);
            puts.push(Put {
                item: t.clone(),
                guard: Guard::AbsentOrSame,
            });
        }
    }
    let record = TransitionRecord {
        agent_id: spec.agent_id.clone(),
        version: spec.version.clone(),
        sequence: state.next_sequence(),
        at: now,
        from: None,
        to: spec.status,
        from_weight: 0,
        to_weight: spec.traffic_weight,
        reason: request.reason.clone(),
        actor: request.actor.clone(),
    };
    finish(state, puts, spec.clone(), record, now)
}

/// Plans moving `version` to `request.to` at `request.weight`. `PortError::NotFound` when the
/// version is not registered; `PortError::Invalid` when the transition is not allowed
/// ([`AgentStatus::can_transition_to`]), the weight does not fit the status, or reason or actor
/// are missing.
pub fn plan_transition(
    state: &AgentState,
    version: &Version,
    request: &TransitionRequest,
    now: DateTime<Utc>,
) -> Result<Planned, PortError> {
    check_why(&request.reason, &request.actor)?;
    let current = state
        .version(version)
        .ok_or_else(|| not_registered(&state.agent_id, version))?;
    let from = current.spec.status;
    if from == request.to && current.spec.traffic_weight == request.weight {
        return Ok(Planned::Unchanged(Box::new(current.spec.clone())));
    }
    if from != request.to && !from.can_transition_to(request.to) {
        return Err(PortError::Invalid(format!(
            "agent {}@{version} cannot go from {} to {}{}",
            state.agent_id,
            from.as_str(),
            request.to.as_str(),
            if from.is_final() {
                format!(" ({} is final: register a new version)", from.as_str())
            } else {
                String::new()
            }
        )));
    }
    let mut spec = current.spec.clone();
    spec.status = request.to;
    spec.traffic_weight = request.weight;
    invalid_spec(&spec)?;
    let (item, _) = version_items(&spec, current.revision + 1)?;
    let puts = vec![Put {
        item,
        guard: Guard::Revision(current.revision),
    }];
    let record = TransitionRecord {
        agent_id: state.agent_id.clone(),
        version: version.clone(),
        sequence: state.next_sequence(),
        at: now,
        from: Some(from),
        to: request.to,
        from_weight: current.spec.traffic_weight,
        to_weight: request.weight,
        reason: request.reason.clone(),
        actor: request.actor.clone(),
    };
    finish(state, puts, spec, record, now).map(|p| Planned::Write(Box::new(p)))
}

/// The version item of `stored` with new performance figures (not a transition: no routing
/// change, no history), guarded by its revision.
pub fn plan_performance(
    stored: &StoredVersion,
    performance: &crate::agent::PerformanceMetrics,
) -> Result<Put, PortError> {
    let mut spec = stored.spec.clone();
    spec.performance = Some(performance.clone());
    let (item, _) = version_items(&spec, stored.revision + 1)?;
    Ok(Put {
        item,
        guard: Guard::Revision(stored.revision),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(version: &str, status: AgentStatus, weight: u8) -> AgentSpec {
        serde_json::from_value(json!({
            "agentId": "upsell-generator", "version": version, "role": "generator",
            "prompt": {"system": "You write upsells.", "user": "{{ facts }}"},
            "modelId": "offline", "config": {"temperature": 0.4, "maxTokens": 300},
            "maxAttempts": 3, "status": status, "trafficWeight": weight,
            "createdAt": "2025-01-01T00:00:00Z",
        }))
        .unwrap()
    }

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn who() -> RegisterRequest {
        RegisterRequest {
            reason: "test".into(),
            actor: Actor::new(ActorKind::User, "dana"),
        }
    }

    /// Applies a plan to a list of items as a store would (guards checked).
    fn apply(items: &mut Vec<Item>, plan: &WritePlan) {
        for put in &plan.puts {
            let key = (get_s(&put.item, PK), get_s(&put.item, SK));
            let pos = items
                .iter()
                .position(|i| (get_s(i, PK), get_s(i, SK)) == key);
            match (put.guard, pos) {
                (Guard::Absent, None) | (Guard::AbsentOrSame, None) => {}
                (Guard::AbsentOrSame, Some(p)) => {
                    assert_eq!(items[p], put.item);
                }
                (Guard::Revision(r), Some(p)) => {
                    assert_eq!(get_n::<u64>(&items[p], "revision"), Some(r));
                }
                (g, p) => panic!("guard {g:?} fails with {p:?}"),
            }
            match pos {
                Some(p) => items[p] = put.item.clone(),
                None => items.push(put.item.clone()),
            }
        }
    }

    #[test]
    fn routing_prefers_the_heaviest_then_the_highest_version() {
        let specs = [
            spec("1.0.0", AgentStatus::Production, 60),
            spec("2.0.0", AgentStatus::Production, 30),
            spec("3.0.0", AgentStatus::Canary, 10),
            spec("4.0.0", AgentStatus::Canary, 0),
            spec("5.0.0", AgentStatus::Retired, 0),
            spec("6.0.0", AgentStatus::RolledBack, 0),
        ];
        assert_eq!(
            Routing::of(&specs),
            Routing {
                production_version: Some(v("1.0.0")),
                canary_version: Some(v("3.0.0")),
                canary_weight: 10,
            }
        );
        let tie = [
            spec("1.0.0", AgentStatus::Production, 50),
            spec("2.0.0", AgentStatus::Production, 50),
        ];
        assert_eq!(Routing::of(&tie).production_version, Some(v("2.0.0")));
    }

    #[test]
    fn items_round_trip_and_templates_are_shared_by_content() {
        let mut items = Vec::new();
        let state = AgentState::from_items("upsell-generator", &items).unwrap();
        let a = spec("1.0.0", AgentStatus::Production, 100);
        let plan = plan_register(&state, &a, &who(), Utc::now()).unwrap();
        apply(&mut items, &plan);
        // Version, two templates, routing, history.
        assert_eq!(plan.puts.len(), 5);

        let state = AgentState::from_items("upsell-generator", &items).unwrap();
        assert_eq!(state.specs(), std::slice::from_ref(&a));
        assert_eq!(state.routing.production_version, Some(v("1.0.0")));
        // Same templates: the second version stores none.
        let b = spec("1.1.0", AgentStatus::Draft, 0);
        let plan = plan_register(&state, &b, &who(), Utc::now()).unwrap();
        assert_eq!(plan.puts.len(), 3);
        apply(&mut items, &plan);
        let version_item = &plan.puts[0].item;
        assert_eq!(
            get_s(version_item, "systemTemplate"),
            Some(template_hash("You write upsells.").as_str())
        );
        assert!(!get_s(version_item, "spec").unwrap().contains("prompt"));

        let state = AgentState::from_items("upsell-generator", &items).unwrap();
        assert_eq!(state.specs(), [a, b]);
        assert_eq!(specs_from_items(&items).unwrap().len(), 2);
        let history = history_from_items(&items).unwrap();
        assert_eq!(
            history.iter().map(|r| r.sequence).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(history[1].from, None);
        assert_eq!(history[1].to, AgentStatus::Draft);
    }

    #[test]
    fn transitions_are_checked_recorded_and_idempotent() {
        let mut items = Vec::new();
        let state = AgentState::from_items("upsell-generator", &items).unwrap();
        let plan = plan_register(
            &state,
            &spec("1.0.0", AgentStatus::Draft, 0),
            &who(),
            Utc::now(),
        )
        .unwrap();
        apply(&mut items, &plan);
        let state = AgentState::from_items("upsell-generator", &items).unwrap();
        let req = |to, weight| TransitionRequest {
            to,
            weight,
            reason: "why".into(),
            actor: Actor::new(ActorKind::Execution, "arn:aws:states:x"),
        };
        let err = plan_transition(
            &state,
            &v("1.0.0"),
            &req(AgentStatus::Production, 100),
            Utc::now(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot go from draft to production")
        );
        let err = plan_transition(
            &state,
            &v("1.0.0"),
            &req(AgentStatus::Evaluating, 5),
            Utc::now(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/trafficWeight"), "{err}");
        let mut blank = req(AgentStatus::Evaluating, 0);
        blank.reason = " ".into();
        assert!(matches!(
            plan_transition(&state, &v("1.0.0"), &blank, Utc::now()),
            Err(PortError::Invalid(_))
        ));
        assert!(matches!(
            plan_transition(
                &state,
                &v("9.0.0"),
                &req(AgentStatus::Evaluating, 0),
                Utc::now()
            ),
            Err(PortError::NotFound(_))
        ));
        let Planned::Write(plan) = plan_transition(
            &state,
            &v("1.0.0"),
            &req(AgentStatus::Evaluating, 0),
            Utc::now(),
        )
        .unwrap() else {
            panic!("expected a write")
        };
        assert_eq!(plan.record.from, Some(AgentStatus::Draft));
        assert_eq!(plan.record.sequence, 2);
        assert_eq!(plan.puts[0].guard, Guard::Revision(1));
        apply(&mut items, &plan);
        let state = AgentState::from_items("upsell-generator", &items).unwrap();
        assert!(matches!(
            plan_transition(
                &state,
                &v("1.0.0"),
                &req(AgentStatus::Evaluating, 0),
                Utc::now()
            )
            .unwrap(),
            Planned::Unchanged(_)
        ));
    }

    #[test]
    fn the_routing_item_is_what_the_state_machine_reads() {
        let r = Routing {
            production_version: Some(v("1.0.0")),
            canary_version: Some(v("2.0.0")),
            canary_weight: 10,
        };
        let at = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let item = r.item("upsell-generator", 3, at);
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            json!({
                "agentId": {"S": "upsell-generator"},
                "canaryVersion": {"S": "2.0.0"},
                "canaryWeight": {"N": "10"},
                "pk": {"S": "AGENT#upsell-generator"},
                "productionVersion": {"S": "1.0.0"},
                "revision": {"N": "3"},
                "sk": {"S": "ROUTING"},
                "updatedAt": {"S": "2026-01-01T00:00:00+00:00"}
            })
        );
        assert_eq!(Routing::from_item(Some(&item)).unwrap(), r);
        assert!(STATE_FROM > HISTORY_PREFIX && STATE_FROM < TEMPLATE_PREFIX);
        assert!(TEMPLATE_PREFIX < VERSION_PREFIX);
    }
}
