//! The registry Lambda's logic: registering agent versions and moving them through their
//! lifecycle for callers in AWS (a rollout or evaluation state machine, an operator with
//! `aws lambda invoke`), and seeding the registry on deploy as a CloudFormation custom
//! resource. `main.rs` only builds the DynamoDB registry and answers CloudFormation.
//!
//! Every change goes through the [`AgentRegistry`] port (`register`, `transition`), so the rules
//! and the history are those of `upsell_core::registry`, as for the CLI.

use std::sync::Arc;

use semver::Version;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use upsell_core::agent::{AgentRole, AgentSpec};
use upsell_core::ports::{AgentRegistry, PortError};
use upsell_core::registry::{Actor, RegisterRequest, TransitionRequest};
use upsell_core::worker::{ErrorName, StableError};
use upsell_models::seed::{seed_agents, seed_request};

/// The worker's ports.
#[derive(Clone)]
pub struct Deps {
    /// The agent registry (DynamoDB in Lambda).
    pub registry: Arc<dyn AgentRegistry>,
}

/// A direct call: `{"action": "register", ...}` or `{"action": "transition", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Registers a new version.
    #[serde(rename_all = "camelCase")]
    Register {
        /// The full spec, prompt included.
        spec: Box<AgentSpec>,
        /// Why, for the history.
        reason: String,
        /// Who or what.
        actor: Actor,
    },
    /// Moves a version to a status and weight.
    #[serde(rename_all = "camelCase")]
    Transition {
        /// Agent id.
        agent_id: String,
        /// Version.
        #[serde(with = "upsell_core::agent::semver_lenient")]
        version: Version,
        /// Status, weight, reason and actor.
        #[serde(flatten)]
        request: TransitionRequest,
    },
}

/// Failure of a direct call; [`WorkerError::error_type`] is the stable name a state machine's
/// Retry and Catch match.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The request is not a registry request.
    #[error("invalid registry request: {0}")]
    BadRequest(String),
    /// The registry refused or failed.
    #[error(transparent)]
    Port(#[from] PortError),
}

impl WorkerError {
    /// `InvalidRequest` for a malformed request, else the port error's name (`NotFound`,
    /// `Conflict`, `InvalidRequest`, `Throttled`, ...).
    pub fn error_type(&self) -> ErrorName {
        match self {
            WorkerError::BadRequest(_) => ErrorName::InvalidRequest,
            WorkerError::Port(e) => e.error_type(),
        }
    }
}

impl StableError for WorkerError {
    fn error_name(&self) -> ErrorName {
        self.error_type()
    }
}

/// Handles a direct call; returns the version as stored.
pub async fn handle(request: Request, deps: &Deps) -> Result<AgentSpec, WorkerError> {
    match request {
        Request::Register {
            spec,
            reason,
            actor,
        } => {
            deps.registry
                .register(&spec, &RegisterRequest { reason, actor })
                .await?;
            Ok(*spec)
        }
        Request::Transition {
            agent_id,
            version,
            request,
        } => Ok(deps
            .registry
            .transition(&agent_id, &version, &request)
            .await?),
    }
}

/// A CloudFormation custom-resource request (the fields this worker reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomResourceEvent {
    /// `Create`, `Update` or `Delete`.
    pub request_type: String,
    /// Presigned S3 URL the answer is PUT to.
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    /// The stack's ARN.
    pub stack_id: String,
    /// This request's id.
    pub request_id: String,
    /// The resource's logical id in the template.
    pub logical_resource_id: String,
    /// The id this worker gave the resource (absent on Create).
    #[serde(default)]
    pub physical_resource_id: Option<String>,
    /// The resource's properties.
    #[serde(default)]
    pub resource_properties: Value,
}

/// The answer to a custom-resource request, PUT to its `ResponseURL`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomResourceResponse {
    /// `SUCCESS` or `FAILED`.
    pub status: String,
    /// Why it failed (shown in the stack events).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Stable id of the resource.
    pub physical_resource_id: String,
    /// From the request.
    pub stack_id: String,
    /// From the request.
    pub request_id: String,
    /// From the request.
    pub logical_resource_id: String,
    /// Attributes for `!GetAtt`: `GeneratorProductionVersion`, `JudgeProductionVersion`,
    /// `Registered` (how many seed versions this request added).
    #[serde(default)]
    pub data: Map<String, Value>,
}

/// Whether a Lambda payload is a CloudFormation custom-resource request.
pub fn is_custom_resource(payload: &Value) -> bool {
    payload.get("RequestType").is_some() && payload.get("ResponseURL").is_some()
}

/// The `!GetAtt` name of the production version of the seed agent with `role`.
fn attribute(role: AgentRole) -> &'static str {
    match role {
        AgentRole::Generator => "GeneratorProductionVersion",
        AgentRole::Judge => "JudgeProductionVersion",
    }
}

/// Seeds the registry for a custom-resource request: on Create and Update, registers every seed
/// agent version not registered yet (idempotent: a repeated request, or an update, adds nothing
/// that is there and changes no status); on Delete, keeps the registry as it is (the table
/// outlives the seeding resource; its own deletion policy decides). Never fails: a problem
/// becomes a `FAILED` answer with the reason, so the stack does not wait for an answer.
pub async fn seed(event: &CustomResourceEvent, deps: &Deps) -> CustomResourceResponse {
    let mut response = CustomResourceResponse {
        status: "SUCCESS".into(),
        reason: String::new(),
        physical_resource_id: event
            .physical_resource_id
            .clone()
            .unwrap_or_else(|| format!("{}-agent-seed", event.logical_resource_id)),
        stack_id: event.stack_id.clone(),
        request_id: event.request_id.clone(),
        logical_resource_id: event.logical_resource_id.clone(),
        data: Map::new(),
    };
    if event.request_type == "Delete" {
        return response;
    }
    match seed_and_read(&event.stack_id, deps).await {
        Ok(data) => response.data = data,
        Err(e) => {
            response.status = "FAILED".into();
            response.reason = format!("seeding the agent registry: {e}");
        }
    }
    response
}

async fn seed_and_read(stack: &str, deps: &Deps) -> Result<Map<String, Value>, PortError> {
    let request = seed_request(stack);
    let mut registered = 0;
    let mut data = Map::new();
    for spec in seed_agents() {
        match deps.registry.register(&spec, &request).await {
            Ok(()) => registered += 1,
            // Already there (a repeated request, an update): leave it as it is now. A conflict
            // that was a lost race instead fails the get below.
            Err(PortError::Conflict(_)) => {
                deps.registry.get(&spec.agent_id, &spec.version).await?;
            }
            Err(e) => return Err(e),
        }
        let routing = deps.registry.routing(&spec.agent_id).await?;
        let production = routing.production_version.map_or_else(
            // CloudFormation needs a value; "none" says there is no production version.
            || "none".to_owned(),
            |v| v.to_string(),
        );
        data.insert(attribute(spec.role).into(), json!(production));
    }
    data.insert("Registered".into(), json!(registered));
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use upsell_core::agent::AgentStatus;
    use upsell_core::registry::ActorKind;
    use upsell_sqlite::SqliteAgentRegistry;

    #[tokio::test]
    async fn transition_requests_read_as_documented_and_refusals_keep_their_names() {
        let registry = Arc::new(SqliteAgentRegistry::in_memory().unwrap());
        let deps = Deps {
            registry: registry.clone(),
        };
        let mut spec = seed_agents().remove(0);
        spec.version = Version::new(1, 1, 0);
        spec.status = AgentStatus::Draft;
        spec.traffic_weight = 0;
        let register: Request = serde_json::from_value(json!({
            "action": "register", "spec": spec, "reason": "new prompt",
            "actor": {"kind": "user", "id": "dana"}
        }))
        .unwrap();
        handle(register.clone(), &deps).await.unwrap();
        let err = handle(register, &deps).await.unwrap_err();
        assert_eq!(err.error_type(), "Conflict");

        let call = |to: &str, weight: u8| -> Request {
            serde_json::from_value(json!({
                "action": "transition", "agentId": "upsell-generator", "version": "1.1",
                "to": to, "weight": weight, "reason": "rollout step",
                "actor": {"kind": "execution", "id": "arn:aws:states:us-east-1:1:execution:r:x"}
            }))
            .unwrap()
        };
        let err = handle(call("canary", 10), &deps).await.unwrap_err();
        assert_eq!(err.error_type(), "InvalidRequest");
        handle(call("evaluating", 0), &deps).await.unwrap();
        let moved = handle(call("canary", 10), &deps).await.unwrap();
        assert_eq!(
            (moved.status, moved.traffic_weight),
            (AgentStatus::Canary, 10)
        );
        let history = registry.history("upsell-generator").await.unwrap();
        let last = history.last().unwrap();
        assert_eq!(last.actor.kind, ActorKind::Execution);
        assert_eq!(last.reason, "rollout step");
        assert!(
            serde_json::from_value::<Request>(json!({"action": "delete"})).is_err(),
            "unknown actions are refused"
        );
    }
}
