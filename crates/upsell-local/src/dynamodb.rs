//! The DynamoDB task integrations that the state machines use, over the local [`TableStore`]:
//! `arn:aws:states:::dynamodb:getItem` (LoadRouting) and `arn:aws:states:::dynamodb:putItem`
//! (ClaimEvent, RecordReport), with the parameters and the `ConditionExpression` subset they
//! use: `attribute_not_exists(name)` and `name = :value` terms joined by `OR`.
//!
//! Outputs and errors follow Step Functions' optimized integration: getItem returns
//! `{"Item": {...}}` (no `Item` when absent), putItem `{}`, both with `SdkHttpMetadata`; a failed
//! condition is `DynamoDB.ConditionalCheckFailedException`, and a request that DynamoDB would
//! reject fails with its error name and message. Any other DynamoDB action, parameter or
//! expression construct fails with `States.Runtime` naming it, which no Retry or Catch (not even
//! `States.ALL`) handles, so a definition that needs more than this never passes locally by
//! accident. DynamoDB's reserved words are not checked: a plain attribute name that DynamoDB
//! reserves (e.g. `status`) passes here and fails in AWS.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use upsell_asl::{Resources, TaskContext, TaskFailure, TaskHandler};
use upsell_sqlite::{ItemKey, KeyValue, TableStore, Write};

use crate::template::TableSpec;

/// Largest item DynamoDB stores (400 KB).
const MAX_ITEM_BYTES: usize = 400 * 1024;

const GET_ITEM: &str = "arn:aws:states:::dynamodb:getItem";
const PUT_ITEM: &str = "arn:aws:states:::dynamodb:putItem";
const GET_PARAMETERS: &[&str] = &["TableName", "Key"];
const PUT_PARAMETERS: &[&str] = &[
    "TableName",
    "Item",
    "ConditionExpression",
    "ExpressionAttributeValues",
];

#[derive(Debug, Clone)]
struct Keys {
    pk: String,
    sk: Option<String>,
}

/// The DynamoDB task handler.
pub struct DynamoDbTasks {
    store: Arc<TableStore>,
    tables: HashMap<String, Keys>,
}

impl std::fmt::Debug for DynamoDbTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoDbTasks")
            .field("tables", &self.tables.keys().collect::<Vec<_>>())
            .finish()
    }
}

enum Failure {
    /// What DynamoDB itself would answer: its error code and message.
    Service(&'static str, String),
    /// Something the local emulation does not implement.
    Unsupported(String),
}

fn validation(message: impl Into<String>) -> Failure {
    Failure::Service("ValidationException", message.into())
}

fn store_error(e: upsell_core::ports::PortError) -> Failure {
    Failure::Service("InternalServerError", format!("local table store: {e}"))
}

impl DynamoDbTasks {
    /// A handler over `store` that knows the key schema of `tables` (names = logical ids).
    pub fn new<'a>(
        store: Arc<TableStore>,
        tables: impl IntoIterator<Item = &'a TableSpec>,
    ) -> Self {
        DynamoDbTasks {
            store,
            tables: tables
                .into_iter()
                .map(|t| {
                    let keys = Keys {
                        pk: t.partition_key.clone(),
                        sk: t.sort_key.clone(),
                    };
                    (t.logical_id.clone(), keys)
                })
                .collect(),
        }
    }

    /// Registers the handler for every DynamoDB resource ARN, so that the ones it does not
    /// serve fail with a message naming them rather than as an unknown resource.
    pub fn register(self: Arc<Self>, resources: &mut Resources) {
        resources.register_pattern("arn:aws:states:::dynamodb:*", self.clone());
        resources.register_pattern("arn:aws:states:::aws-sdk:dynamodb:*", self);
    }

    fn run(&self, resource: &str, p: &Value) -> Result<Value, Failure> {
        let allowed = match resource {
            GET_ITEM => GET_PARAMETERS,
            PUT_ITEM => PUT_PARAMETERS,
            other => {
                return Err(Failure::Unsupported(format!(
                    "{other} is not supported by the local DynamoDB emulation; it runs {GET_ITEM} and {PUT_ITEM}"
                )));
            }
        };
        let Value::Object(p) = p else {
            return Err(validation("The request parameters must be a JSON object"));
        };
        if let Some(name) = p.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(Failure::Unsupported(format!(
                "parameter {name} of {resource} is not supported by the local DynamoDB emulation; it supports {}",
                allowed.join(", ")
            )));
        }
        let table = p
            .get("TableName")
            .and_then(Value::as_str)
            .ok_or_else(|| validation("1 validation error detected: Value null at 'tableName' failed to satisfy constraint: Member must not be null"))?;
        let keys = self.tables.get(table).ok_or_else(|| {
            Failure::Service(
                "ResourceNotFoundException",
                format!("Requested resource not found: Table: {table} not found"),
            )
        })?;
        if resource == GET_ITEM {
            let key = key_of(keys, p.get("Key"), true)?;
            let item = self.store.get(table, &key).map_err(store_error)?;
            return Ok(match item {
                Some(item) => json!({ "Item": item }),
                None => json!({}),
            });
        }
        let values = p
            .get("ExpressionAttributeValues")
            .and_then(Value::as_object);
        let condition = match p.get("ConditionExpression").and_then(Value::as_str) {
            Some(src) => parse_condition(src, values)?,
            None => Vec::new(),
        };
        if let Some(unused) = values
            .into_iter()
            .flat_map(Map::keys)
            .find(|k| !condition.iter().any(|t| t.value_name() == Some(k.as_str())))
        {
            return Err(validation(format!(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: {{{unused}}}"
            )));
        }
        let item = p.get("Item").ok_or_else(|| validation("1 validation error detected: Value null at 'item' failed to satisfy constraint: Member must not be null"))?;
        check_item(item)?;
        let key = key_of(keys, Some(item), false)?;
        self.store
            .modify(table, &key, |old| {
                let empty = Map::new();
                let old = old.and_then(Value::as_object).unwrap_or(&empty);
                if condition.is_empty() || condition.iter().any(|t| t.holds(old)) {
                    Ok(Write::Put(item.clone()))
                } else {
                    Err(Failure::Service(
                        "ConditionalCheckFailedException",
                        "The conditional request failed".into(),
                    ))
                }
            })
            .map_err(store_error)??;
        Ok(json!({}))
    }
}

/// One term of a supported condition; the condition holds when any of its terms does.
#[derive(Debug)]
enum Term {
    /// `attribute_not_exists(name)`
    NotExists(String),
    /// `name = :value`, with the value looked up.
    Equals(String, String, Value),
}

impl Term {
    fn value_name(&self) -> Option<&str> {
        match self {
            Term::NotExists(_) => None,
            Term::Equals(_, v, _) => Some(v),
        }
    }

    fn holds(&self, item: &Map<String, Value>) -> bool {
        match self {
            Term::NotExists(name) => !item.contains_key(name),
            Term::Equals(name, _, value) => item.get(name).is_some_and(|v| scalar_eq(v, value)),
        }
    }
}

/// DynamoDB's `=` on scalar values: same type, numbers compared as numbers.
fn scalar_eq(a: &Value, b: &Value) -> bool {
    let number = |v: &Value| v.get("N")?.as_str()?.trim().parse::<f64>().ok();
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Parses `src` as `attribute_not_exists(name)` and `name = :value` terms joined by `OR`.
fn parse_condition(src: &str, values: Option<&Map<String, Value>>) -> Result<Vec<Term>, Failure> {
    let tokens = tokenize(src);
    let mut terms = Vec::new();
    for part in tokens.split(|(_, t)| t.eq_ignore_ascii_case("OR")) {
        let words: Vec<&str> = part.iter().map(|(_, t)| *t).collect();
        let term = match words.as_slice() {
            ["attribute_not_exists", "(", name, ")"] if is_name(name) => {
                Term::NotExists((*name).to_string())
            }
            [name, "=", value] if is_name(name) && value.starts_with(':') => {
                let v = values.and_then(|m| m.get(*value)).ok_or_else(|| {
                    validation(format!(
                        "Invalid ConditionExpression: An expression attribute value used in expression is not defined; attribute value: {value}"
                    ))
                })?;
                check_value(v).map_err(|e| {
                    validation(format!(
                        "ExpressionAttributeValues contains invalid value: {e} for key {value}"
                    ))
                })?;
                if !["S", "N", "B", "BOOL", "NULL"]
                    .iter()
                    .any(|t| v.get(t).is_some())
                {
                    return Err(Failure::Unsupported(format!(
                        "ConditionExpression \"{src}\": comparing with {value}, a set, list or map, is not supported by the local DynamoDB emulation"
                    )));
                }
                Term::Equals((*name).to_string(), (*value).to_string(), v.clone())
            }
            _ => {
                let text = match (part.first(), part.last()) {
                    (Some((start, _)), Some((end, last))) => &src[*start..end + last.len()],
                    _ => "",
                };
                return Err(Failure::Unsupported(format!(
                    "ConditionExpression \"{src}\": \"{text}\" is not supported by the local DynamoDB emulation; it supports attribute_not_exists(name) and name = :value joined by OR"
                )));
            }
        };
        terms.push(term);
    }
    Ok(terms)
}

/// Words (names, `:values`, `#names`, keywords) and single other characters, with their offsets.
fn tokenize(src: &str) -> Vec<(usize, &str)> {
    let word = |c: char| c.is_alphanumeric() || matches!(c, '_' | ':' | '#');
    let mut out = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        let mut end = i + c.len_utf8();
        if word(c) {
            while let Some(&(j, d)) = chars.peek().filter(|(_, d)| word(*d)) {
                end = j + d.len_utf8();
                chars.next();
            }
        }
        out.push((i, &src[i..end]));
    }
    out
}

/// A top-level attribute name written as is (no `#name`, no document path).
fn is_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_item(item: &Value) -> Result<(), Failure> {
    let Some(map) = item.as_object() else {
        return Err(validation(
            "One or more parameter values were invalid: the item must be a map of attribute values",
        ));
    };
    for (name, v) in map {
        check_value(v).map_err(|e| {
            validation(format!(
                "One or more parameter values were invalid: {e} (attribute {name})"
            ))
        })?;
    }
    if item.to_string().len() > MAX_ITEM_BYTES {
        return Err(validation(
            "Item size has exceeded the maximum allowed size",
        ));
    }
    Ok(())
}

/// Checks a DynamoDB-JSON attribute value (`{"S": "x"}`, `{"N": "1"}`, `{"M": {...}}`...).
fn check_value(v: &Value) -> Result<(), String> {
    let Some((ty, inner)) = v
        .as_object()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.iter().next())
    else {
        return Err(format!(
            "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes: {v}"
        ));
    };
    let number = |n: &Value| {
        n.as_str()
            .is_some_and(|n| n.trim().parse::<f64>().is_ok_and(f64::is_finite))
    };
    let set = |ok: &dyn Fn(&Value) -> bool| {
        inner
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(ok))
    };
    let ok = match ty.as_str() {
        "S" | "B" => inner.is_string(),
        "N" => number(inner),
        "BOOL" => inner.is_boolean(),
        "NULL" => inner == &Value::Bool(true),
        "SS" | "BS" => set(&Value::is_string),
        "NS" => set(&number),
        "L" => {
            let list = inner.as_array().ok_or("L must be a list")?;
            return list.iter().try_for_each(check_value);
        }
        "M" => {
            let map = inner.as_object().ok_or("M must be a map")?;
            return map.values().try_for_each(check_value);
        }
        other => return Err(format!("unknown AttributeValue type {other}")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid {ty} value {inner}"))
    }
}

fn key_value(v: Option<&Value>, name: &str) -> Result<KeyValue, Failure> {
    let bad = || validation("The provided key element does not match the schema");
    let map = v
        .and_then(Value::as_object)
        .filter(|m| m.len() == 1)
        .ok_or_else(bad)?;
    let (ty, inner) = map.iter().next().ok_or_else(bad)?;
    let s = inner.as_str().ok_or_else(bad)?;
    match ty.as_str() {
        "S" if !s.is_empty() => Ok(KeyValue::S(s.to_string())),
        "N" => s.trim().parse().map(KeyValue::N).map_err(|_| bad()),
        "B" => Ok(KeyValue::B(s.as_bytes().to_vec())),
        "S" => Err(validation(format!(
            "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: {name}"
        ))),
        _ => Err(bad()),
    }
}

/// The key of `map`; with `exact`, `map` must hold the key attributes and nothing else.
fn key_of(keys: &Keys, map: Option<&Value>, exact: bool) -> Result<ItemKey, Failure> {
    let map = map
        .and_then(Value::as_object)
        .ok_or_else(|| validation("The provided key element does not match the schema"))?;
    if exact && map.len() != 1 + usize::from(keys.sk.is_some()) {
        return Err(validation(
            "The provided key element does not match the schema",
        ));
    }
    let attribute = |name: &String| match map.get(name) {
        Some(v) => key_value(Some(v), name),
        None => Err(validation(format!(
            "One or more parameter values were invalid: Missing the key {name} in the item"
        ))),
    };
    Ok(ItemKey {
        pk: attribute(&keys.pk)?,
        sk: keys.sk.as_ref().map(attribute).transpose()?,
    })
}

fn sdk_metadata() -> (Value, Value) {
    (
        json!({
            "AllHttpHeaders": {
                "Server": ["Server"],
                "Connection": ["keep-alive"],
                "x-amzn-RequestId": [uuid::Uuid::new_v4().to_string()],
                "Content-Type": ["application/x-amz-json-1.0"]
            },
            "HttpHeaders": {
                "Connection": "keep-alive",
                "Content-Type": "application/x-amz-json-1.0",
                "Server": "Server"
            },
            "HttpStatusCode": 200
        }),
        json!({"RequestId": uuid::Uuid::new_v4().to_string()}),
    )
}

#[async_trait::async_trait]
impl TaskHandler for DynamoDbTasks {
    async fn invoke(
        &self,
        resource: &str,
        input: Value,
        _ctx: &TaskContext,
    ) -> Result<Value, TaskFailure> {
        match self.run(resource, &input) {
            Ok(mut out) => {
                let (http, response) = sdk_metadata();
                out["SdkHttpMetadata"] = http;
                out["SdkResponseMetadata"] = response;
                Ok(out)
            }
            Err(Failure::Service(code, message)) => {
                let request_id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
                // Step Functions names the error after the SDK's exception class, not the code:
                // the state machines retry `DynamoDB.InternalServerErrorException`.
                let (error, status) = match code {
                    "ValidationException" => ("DynamoDB.AmazonDynamoDBException".into(), 400),
                    "InternalServerError" => ("DynamoDB.InternalServerErrorException".into(), 500),
                    code => (format!("DynamoDB.{code}"), 400),
                };
                Err(TaskFailure {
                    error,
                    cause: Some(format!(
                        "{message} (Service: AmazonDynamoDBv2; Status Code: {status}; Error Code: {code}; Request ID: {request_id}; Proxy: null)"
                    )),
                })
            }
            Err(Failure::Unsupported(message)) => Err(TaskFailure {
                error: "States.Runtime".into(),
                cause: Some(message),
            }),
        }
    }
}
