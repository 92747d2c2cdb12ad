//! The seed agents (`agents/upsell-generator/1.0.0`, `agents/upsell-judge/1.0.0`), embedded at
//! build time so the registry can be filled on first run, and the loader for agent folders
//! (`agent.json` + `system.jinja` + `user.jinja`).

use std::path::Path;

use upsell_core::agent::{AgentSpec, PromptTemplates};
use upsell_core::registry::{Actor, ActorKind, RegisterRequest};

/// Agent id of the generator.
pub const GENERATOR_ID: &str = "upsell-generator";
/// Agent id of the judge.
pub const JUDGE_ID: &str = "upsell-judge";

/// The brand guidelines text the judge prompt quotes (`knowledge-base/brand/guidelines.md`).
pub const BRAND_GUIDELINES: &str = include_str!("../../../knowledge-base/brand/guidelines.md");

const SEEDS: [(&str, &str, &str, &str); 2] = [
    (
        "agents/upsell-generator/1.0.0",
        include_str!("../../../agents/upsell-generator/1.0.0/agent.json"),
        include_str!("../../../agents/upsell-generator/1.0.0/system.jinja"),
        include_str!("../../../agents/upsell-generator/1.0.0/user.jinja"),
    ),
    (
        "agents/upsell-judge/1.0.0",
        include_str!("../../../agents/upsell-judge/1.0.0/agent.json"),
        include_str!("../../../agents/upsell-judge/1.0.0/system.jinja"),
        include_str!("../../../agents/upsell-judge/1.0.0/user.jinja"),
    ),
];

/// An agent folder that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("agent {origin}: {message}")]
pub struct AgentLoadError {
    /// Folder or file.
    pub origin: String,
    /// What is wrong.
    pub message: String,
}

/// Builds an AgentSpec from `agent.json` text (without `prompt`) and the two templates.
pub fn assemble(
    origin: &str,
    agent_json: &str,
    system: &str,
    user: &str,
) -> Result<AgentSpec, AgentLoadError> {
    let err = |message: String| AgentLoadError {
        origin: origin.to_owned(),
        message,
    };
    let mut v: serde_json::Value =
        serde_json::from_str(agent_json).map_err(|e| err(format!("agent.json: {e}")))?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| err("agent.json must be a JSON object".into()))?;
    if obj.contains_key("prompt") {
        return Err(err(
            "agent.json must not contain `prompt`: the templates live in system.jinja and user.jinja".into(),
        ));
    }
    obj.insert(
        "prompt".into(),
        serde_json::to_value(PromptTemplates {
            system: system.to_owned(),
            user: user.to_owned(),
        })
        .expect("templates serialise"),
    );
    let spec: AgentSpec = serde_json::from_value(v).map_err(|e| err(format!("agent.json: {e}")))?;
    let problems = spec.check();
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(err(list.join("; ")));
    }
    Ok(spec)
}

/// Loads an agent folder (`agent.json`, `system.jinja`, `user.jinja`).
pub fn load_agent_dir(dir: &Path) -> Result<AgentSpec, AgentLoadError> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).map_err(|e| AgentLoadError {
            origin: dir.display().to_string(),
            message: format!("cannot read {name}: {e}"),
        })
    };
    assemble(
        &dir.display().to_string(),
        &read("agent.json")?,
        &read("system.jinja")?,
        &read("user.jinja")?,
    )
}

/// The seed agents shipped in the repository (generator and judge 1.0.0).
pub fn seed_agents() -> Vec<AgentSpec> {
    SEEDS
        .iter()
        .map(|(origin, json, system, user)| {
            assemble(origin, json, system, user)
                .expect("seed agents are checked by this crate's tests")
        })
        .collect()
}

/// How the seed agents are recorded in the registry's history: reason "seed agents shipped in
/// agents/", actor [`ActorKind::Seed`] named `origin` (the stack id on deploy, the local home
/// directory on a laptop).
pub fn seed_request(origin: &str) -> RegisterRequest {
    RegisterRequest {
        reason: "seed agents shipped in agents/".into(),
        actor: Actor::new(ActorKind::Seed, origin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use upsell_core::agent::{AgentRole, AgentStatus};

    #[test]
    fn seeds_load_and_pass_their_checks() {
        let seeds = seed_agents();
        assert_eq!(seeds.len(), 2);
        assert_eq!(seeds[0].agent_id, GENERATOR_ID);
        assert_eq!(seeds[0].role, AgentRole::Generator);
        assert_eq!(seeds[1].agent_id, JUDGE_ID);
        assert_eq!(seeds[1].approval_threshold, Some(7));
        assert!(
            seeds
                .iter()
                .all(|s| s.status == AgentStatus::Production && s.traffic_weight == 100)
        );
        assert!(seeds[0].prompt.user.contains("<generation-context>"));
        assert!(seeds[1].prompt.user.contains("<judge-context>"));
    }

    #[test]
    fn folders_on_disk_match_the_embedded_seeds() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agents");
        let generator = load_agent_dir(&root.join("upsell-generator/1.0.0")).unwrap();
        assert_eq!(generator, seed_agents()[0]);
    }

    #[test]
    fn a_prompt_in_agent_json_is_refused() {
        let err = assemble("x", r#"{"prompt": {}}"#, "s", "u").unwrap_err();
        assert!(
            err.to_string().contains("must not contain `prompt`"),
            "{err}"
        );
    }
}
