//! Choosing the agent version a step runs, and the stable error names of model failures.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use upsell_core::agent::{AgentRole, AgentSpec, AgentStatus, parse_version};
use upsell_core::ports::{AgentRegistry, PortError};

/// Which agent version to run: the state machine passes the version chosen by canary routing,
/// or none to use the registry's production version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentSelector {
    /// Agent id, e.g. `upsell-generator`.
    pub agent_id: String,
    /// Version (lenient semver: `1`, `1.2`, `1.2.3`); absent or null = the production version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl AgentSelector {
    /// The production version of `agent_id`.
    pub fn production(agent_id: &str) -> Self {
        AgentSelector {
            agent_id: agent_id.to_owned(),
            version: None,
        }
    }
}

/// Loads the selected version and checks its role. `PortError::NotFound` when the version (or
/// any production version) does not exist; `PortError::Invalid` for a bad version string or a
/// wrong role.
pub async fn resolve(
    registry: &dyn AgentRegistry,
    selector: &AgentSelector,
    role: AgentRole,
) -> Result<AgentSpec, PortError> {
    let spec = match selector
        .version
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        Some(v) => {
            let version = parse_version(v).map_err(|e| {
                PortError::Invalid(format!("agent {} version {v:?}: {e}", selector.agent_id))
            })?;
            registry.get(&selector.agent_id, &version).await?
        }
        None => registry
            .list_versions(&selector.agent_id)
            .await?
            .into_iter()
            .filter(|s| s.status == AgentStatus::Production)
            .max_by(|a, b| a.version.cmp(&b.version))
            .ok_or_else(|| {
                PortError::NotFound(format!(
                    "agent {} has no production version in the registry",
                    selector.agent_id
                ))
            })?,
    };
    if spec.role != role {
        return Err(PortError::Invalid(format!(
            "agent {}@{} is a {:?}, not a {role:?}",
            spec.agent_id, spec.version, spec.role
        )));
    }
    Ok(spec)
}
