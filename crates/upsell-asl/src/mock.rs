//! Mocked task responses in the Step Functions Local `MockConfig` format: per test case, a
//! state name maps to a mocked response whose numbered entries (`"0"`, `"1-2"`) hold a
//! `Return` value or a `Throw` {Error, Cause}, consumed call by call.

use crate::task::TaskFailure;
use serde_json::Value;
use std::collections::HashMap;

/// One mocked call result.
#[derive(Debug, Clone, PartialEq)]
pub enum MockedResponse {
    /// Returned as the task result.
    Return(Value),
    /// Raised as a task failure.
    Throw(TaskFailure),
}

/// Mocked responses by state name for one test case.
#[derive(Debug, Clone, Default)]
pub struct StateMocks {
    states: HashMap<String, Vec<(u32, u32, MockedResponse)>>,
}

impl StateMocks {
    /// Loads `test_case` from a MockConfig document. `test_case` may be `Machine.Case` or just
    /// `Case` (searched in every state machine).
    pub fn from_mock_config(config: &Value, test_case: &str) -> Result<StateMocks, String> {
        let machines = config
            .get("StateMachines")
            .and_then(Value::as_object)
            .ok_or("MockConfig has no 'StateMachines' object")?;
        let responses = config
            .get("MockedResponses")
            .and_then(Value::as_object)
            .ok_or("MockConfig has no 'MockedResponses' object")?;
        let (machine, case) = match test_case.split_once('.') {
            Some((m, c)) if machines.contains_key(m) => (Some(m), c),
            _ => (None, test_case),
        };
        let found = machines
            .iter()
            .filter(|(name, _)| machine.is_none_or(|m| m == name.as_str()))
            .find_map(|(_, sm)| sm.get("TestCases").and_then(|t| t.get(case)))
            .ok_or_else(|| format!("test case '{test_case}' not found in MockConfig"))?;
        let mapping = found.as_object().ok_or_else(|| {
            format!("test case '{test_case}' must map state names to mocked response names")
        })?;
        let mut states = HashMap::new();
        for (state, resp_name) in mapping {
            let resp_name = resp_name.as_str().ok_or_else(|| {
                format!("test case '{test_case}': state '{state}' must name a mocked response")
            })?;
            let resp = responses
                .get(resp_name)
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    format!(
                        "mocked response '{resp_name}' (used by state '{state}') is not defined"
                    )
                })?;
            let mut entries = Vec::new();
            for (range, body) in resp {
                let (a, b) = match range.split_once('-') {
                    Some((a, b)) => (a.trim().parse::<u32>(), b.trim().parse::<u32>()),
                    None => (range.trim().parse::<u32>(), range.trim().parse::<u32>()),
                };
                let (Ok(a), Ok(b)) = (a, b) else {
                    return Err(format!(
                        "mocked response '{resp_name}': invalid call range '{range}' (use \"0\" or \"0-2\")"
                    ));
                };
                let r = if let Some(v) = body.get("Return") {
                    MockedResponse::Return(v.clone())
                } else if let Some(t) = body.get("Throw") {
                    MockedResponse::Throw(TaskFailure {
                        error: t
                            .get("Error")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        cause: t.get("Cause").and_then(Value::as_str).map(str::to_string),
                    })
                } else {
                    return Err(format!(
                        "mocked response '{resp_name}' entry '{range}' needs 'Return' or 'Throw'"
                    ));
                };
                entries.push((a, b, r));
            }
            states.insert(state.clone(), entries);
        }
        Ok(StateMocks { states })
    }

    /// Adds a response for calls `from..=to` of `state`.
    pub fn insert(&mut self, state: &str, from: u32, to: u32, r: MockedResponse) {
        self.states
            .entry(state.to_string())
            .or_default()
            .push((from, to, r));
    }

    /// The response for the `call`-th (0-based) invocation of `state`, if mocked.
    pub fn response(&self, state: &str, call: usize) -> Option<Result<Value, TaskFailure>> {
        let entries = self.states.get(state)?;
        let c = call as u32;
        let hit = entries
            .iter()
            .find(|(a, b, _)| *a <= c && c <= *b)
            .or_else(|| entries.iter().max_by_key(|(_, b, _)| *b))?;
        Some(match &hit.2 {
            MockedResponse::Return(v) => Ok(v.clone()),
            MockedResponse::Throw(t) => Err(t.clone()),
        })
    }
}
