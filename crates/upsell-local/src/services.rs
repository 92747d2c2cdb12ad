//! Local service integrations that state machines call directly, as ASL task handlers:
//! - DynamoDB: `arn:aws:states:::dynamodb:getItem|putItem|updateItem|deleteItem` (optimized
//!   integration, with `SdkHttpMetadata` and errors named `DynamoDB.<Exception>`) and
//!   `arn:aws:states:::aws-sdk:dynamodb:getItem|putItem|updateItem|deleteItem|query` (SDK
//!   integration, errors named `DynamoDb.<Exception>`), over a SQLite [`TableStore`];
//!   `arn:aws:states:::dynamodb:query` is accepted as an alias of the SDK query.
//! - EventBridge: `arn:aws:states:::events:putEvents` onto the local bus ([`PutEventsTarget`]).
//!
//! Outputs and error names follow what Step Functions returns, e.g. a failed
//! `ConditionExpression` is `DynamoDB.ConditionalCheckFailedException` with the SDK's message
//! as Cause, and getItem returns `{"Item": {...}}` or no `Item` when absent.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use upsell_asl::{Resources, TaskContext, TaskFailure, TaskHandler};
use upsell_sqlite::tables::{ItemKey, KeyValue, Query, SortCondition, TableStore, Write};

use crate::expr::{
    self, Bindings, Cond, Operand, PathPart, Used, apply_update, eval, parse_condition,
    parse_update,
};
use crate::template::{ACCOUNT_ID, REGION, TableSpec};

/// Largest item DynamoDB stores (400 KB).
const MAX_ITEM_BYTES: usize = 400 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// `arn:aws:states:::dynamodb:*`
    Optimized,
    /// `arn:aws:states:::aws-sdk:dynamodb:*`
    Sdk,
}

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

const OPERATIONS: [&str; 5] = ["getItem", "putItem", "updateItem", "deleteItem", "query"];

struct Failure {
    code: &'static str,
    message: String,
}

fn validation(message: impl Into<String>) -> Failure {
    Failure {
        code: "ValidationException",
        message: message.into(),
    }
}

impl From<expr::ExprError> for Failure {
    fn from(e: expr::ExprError) -> Self {
        validation(e.0)
    }
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
                    (
                        t.logical_id.clone(),
                        Keys {
                            pk: t.partition_key.clone(),
                            sk: t.sort_key.clone(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// Registers the handler for every DynamoDB resource ARN it serves.
    pub fn register(self: Arc<Self>, resources: &mut Resources) {
        for op in OPERATIONS {
            resources.register(&format!("arn:aws:states:::dynamodb:{op}"), self.clone());
            resources.register(
                &format!("arn:aws:states:::aws-sdk:dynamodb:{op}"),
                self.clone(),
            );
        }
    }

    fn run(&self, op: &str, p: &Value) -> Result<Value, Failure> {
        let Value::Object(p) = p else {
            return Err(validation("The request parameters must be a JSON object"));
        };
        let table_name = p
            .get("TableName")
            .and_then(Value::as_str)
            .ok_or_else(|| validation("1 validation error detected: Value null at 'tableName' failed to satisfy constraint: Member must not be null"))?;
        let keys = self.tables.get(table_name).ok_or_else(|| Failure {
            code: "ResourceNotFoundException",
            message: format!("Requested resource not found: Table: {table_name} not found"),
        })?;
        let bindings = Bindings {
            names: p.get("ExpressionAttributeNames").and_then(Value::as_object),
            values: p
                .get("ExpressionAttributeValues")
                .and_then(Value::as_object),
        };
        let mut used = Used::default();
        let condition = match p.get("ConditionExpression").and_then(Value::as_str) {
            Some(src) => Some(parse_condition(src, bindings, &mut used)?),
            None => None,
        };
        let return_values = p
            .get("ReturnValues")
            .and_then(Value::as_str)
            .unwrap_or("NONE");
        let store_err = |e: upsell_core::ports::PortError| Failure {
            code: "InternalServerError",
            message: format!("local table store: {e}"),
        };
        let check = |cond: &Option<Cond>, old: Option<&Value>| -> Result<(), Failure> {
            let Some(cond) = cond else { return Ok(()) };
            let empty = Map::new();
            let item = old.and_then(Value::as_object).unwrap_or(&empty);
            if eval(cond, item)? {
                Ok(())
            } else {
                Err(Failure {
                    code: "ConditionalCheckFailedException",
                    message: "The conditional request failed".into(),
                })
            }
        };
        match op {
            "getItem" => {
                if let Some(proj) = p.get("ProjectionExpression").and_then(Value::as_str) {
                    used.note_names(proj);
                }
                used.check_all_used(bindings)?;
                let key = key_of(keys, p.get("Key"), true)?;
                let item = self.store.get(table_name, &key).map_err(store_err)?;
                let mut out = Map::new();
                if let Some(mut item) = item {
                    if let Some(proj) = p.get("ProjectionExpression").and_then(Value::as_str) {
                        item = project(&item, proj, bindings)?;
                    }
                    out.insert("Item".into(), item);
                }
                Ok(Value::Object(out))
            }
            "putItem" => {
                used.check_all_used(bindings)?;
                if !matches!(return_values, "NONE" | "ALL_OLD") {
                    return Err(validation("Return values set to invalid value"));
                }
                let item = p.get("Item").ok_or_else(|| validation("1 validation error detected: Value null at 'item' failed to satisfy constraint: Member must not be null"))?;
                check_item(item)?;
                let key = key_of(keys, Some(item), false)?;
                let result = self
                    .store
                    .modify(table_name, &key, |old| {
                        check(&condition, old)?;
                        Ok::<_, Failure>(Write::Put(item.clone()))
                    })
                    .map_err(store_err)??;
                Ok(attributes(return_values == "ALL_OLD", result.old))
            }
            "deleteItem" => {
                used.check_all_used(bindings)?;
                if !matches!(return_values, "NONE" | "ALL_OLD") {
                    return Err(validation("Return values set to invalid value"));
                }
                let key = key_of(keys, p.get("Key"), true)?;
                let result = self
                    .store
                    .modify(table_name, &key, |old| {
                        check(&condition, old)?;
                        Ok::<_, Failure>(if old.is_some() {
                            Write::Delete
                        } else {
                            Write::Keep
                        })
                    })
                    .map_err(store_err)??;
                Ok(attributes(return_values == "ALL_OLD", result.old))
            }
            "updateItem" => {
                let actions = match p.get("UpdateExpression").and_then(Value::as_str) {
                    Some(src) => parse_update(src, bindings, &mut used)?,
                    None => Vec::new(),
                };
                used.check_all_used(bindings)?;
                if !matches!(
                    return_values,
                    "NONE" | "ALL_OLD" | "ALL_NEW" | "UPDATED_OLD" | "UPDATED_NEW"
                ) {
                    return Err(validation("Return values set to invalid value"));
                }
                let key_map = p.get("Key").cloned().unwrap_or(Value::Null);
                let key = key_of(keys, Some(&key_map), true)?;
                for action in &actions {
                    let path = match action {
                        expr::Action::Set(p, _)
                        | expr::Action::Remove(p)
                        | expr::Action::Add(p, _)
                        | expr::Action::Delete(p, _) => p,
                    };
                    if let Some(PathPart::Field(f)) = path.first()
                        && (f == &keys.pk || Some(f) == keys.sk.as_ref())
                    {
                        return Err(validation(format!(
                            "One or more parameter values were invalid: Cannot update attribute {f}. This attribute is part of the key"
                        )));
                    }
                }
                let mut touched = Vec::new();
                let result = self
                    .store
                    .modify(table_name, &key, |old| {
                        check(&condition, old)?;
                        let mut item = match old {
                            Some(Value::Object(m)) => m.clone(),
                            _ => key_map.as_object().cloned().unwrap_or_default(),
                        };
                        touched = apply_update(&mut item, &actions)?;
                        let item = Value::Object(item);
                        check_item(&item)?;
                        Ok::<_, Failure>(Write::Put(item))
                    })
                    .map_err(store_err)??;
                let pick = |v: Option<Value>| -> Option<Value> {
                    v.and_then(|v| v.as_object().cloned()).map(|m| {
                        Value::Object(m.into_iter().filter(|(k, _)| touched.contains(k)).collect())
                    })
                };
                Ok(match return_values {
                    "ALL_OLD" => attributes(true, result.old),
                    "ALL_NEW" => attributes(true, result.new),
                    "UPDATED_OLD" => attributes(true, pick(result.old)),
                    "UPDATED_NEW" => attributes(true, pick(result.new)),
                    _ => json!({}),
                })
            }
            "query" => self.query(table_name, keys, p, bindings, used),
            other => Err(validation(format!("unsupported operation {other}"))),
        }
    }

    fn query(
        &self,
        table: &str,
        keys: &Keys,
        p: &Map<String, Value>,
        bindings: Bindings<'_>,
        mut used: Used,
    ) -> Result<Value, Failure> {
        if let Some(index) = p.get("IndexName").and_then(Value::as_str) {
            return Err(validation(format!(
                "The table does not have the specified index: {index} (the local table store has no secondary indexes)"
            )));
        }
        let src = p
            .get("KeyConditionExpression")
            .and_then(Value::as_str)
            .ok_or_else(|| validation("Either the KeyConditions or KeyConditionExpression parameter must be specified in the request."))?;
        let cond = parse_condition(src, bindings, &mut used)?;
        let filter = match p.get("FilterExpression").and_then(Value::as_str) {
            Some(f) => Some(parse_condition(f, bindings, &mut used)?),
            None => None,
        };
        used.check_all_used(bindings)?;
        let (pk, sort) = key_condition(&cond, keys)?;
        let limit = p
            .get("Limit")
            .map(|l| {
                l.as_u64()
                    .filter(|l| *l > 0)
                    .and_then(|l| usize::try_from(l).ok())
                    .ok_or_else(|| validation("Limit must be a positive integer"))
            })
            .transpose()?;
        let start_after = match p.get("ExclusiveStartKey") {
            Some(k) => match (&keys.sk, k.as_object()) {
                (Some(sk), Some(m)) => Some(key_value(m.get(sk), sk)?),
                _ => return Err(validation("The provided starting key is invalid")),
            },
            None => None,
        };
        let forward = p
            .get("ScanIndexForward")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let items = self
            .store
            .query(
                table,
                &Query {
                    pk,
                    sort,
                    forward,
                    limit,
                    start_after,
                },
            )
            .map_err(|e| Failure {
                code: "InternalServerError",
                message: format!("local table store: {e}"),
            })?;
        let scanned = items.len();
        let last_key = match (limit, items.last()) {
            (Some(l), Some(last)) if scanned == l => Some(Value::Object(
                [Some(&keys.pk), keys.sk.as_ref()]
                    .into_iter()
                    .flatten()
                    .filter_map(|k| last.get(k).map(|v| (k.clone(), v.clone())))
                    .collect(),
            )),
            _ => None,
        };
        let mut kept = Vec::with_capacity(items.len());
        for item in items {
            let keep = match &filter {
                Some(f) => eval(f, item.as_object().unwrap_or(&Map::new()))?,
                None => true,
            };
            if keep {
                kept.push(item);
            }
        }
        let mut out = json!({"Count": kept.len(), "Items": kept, "ScannedCount": scanned});
        if let Some(k) = last_key {
            out["LastEvaluatedKey"] = k;
        }
        Ok(out)
    }
}

fn attributes(include: bool, item: Option<Value>) -> Value {
    match (include, item) {
        (true, Some(item)) => json!({"Attributes": item}),
        _ => json!({}),
    }
}

fn check_item(item: &Value) -> Result<(), Failure> {
    let Some(map) = item.as_object() else {
        return Err(validation(
            "One or more parameter values were invalid: the item must be a map of attribute values",
        ));
    };
    for (name, v) in map {
        expr::check_attribute_value(v).map_err(|e| {
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
    let bad = || validation("The provided key element does not match the schema");
    let map = map.and_then(Value::as_object).ok_or_else(bad)?;
    let expected = 1 + usize::from(keys.sk.is_some());
    if exact && map.len() != expected {
        return Err(bad());
    }
    let pk = key_value(map.get(&keys.pk), &keys.pk).map_err(|e| {
        if map.contains_key(&keys.pk) {
            e
        } else {
            validation(format!(
                "One or more parameter values were invalid: Missing the key {} in the item",
                keys.pk
            ))
        }
    })?;
    let sk = match &keys.sk {
        Some(sk) => Some(key_value(map.get(sk), sk).map_err(|e| {
            if map.contains_key(sk) {
                e
            } else {
                validation(format!(
                    "One or more parameter values were invalid: Missing the key {sk} in the item"
                ))
            }
        })?),
        None => None,
    };
    Ok(ItemKey { pk, sk })
}

fn operand_key(op: &Operand, name: &str) -> Result<KeyValue, Failure> {
    match op {
        Operand::Value(v) => key_value(Some(v), name),
        _ => Err(validation(
            "Invalid KeyConditionExpression: key values must be expression attribute values",
        )),
    }
}

fn is_attr(op: &Operand, name: &str) -> bool {
    matches!(op, Operand::Path(p) if p.len() == 1 && p[0] == PathPart::Field(name.to_string()))
}

/// Splits a key condition into the partition key value and the sort-key condition.
fn key_condition(cond: &Cond, keys: &Keys) -> Result<(KeyValue, SortCondition), Failure> {
    let missing = || {
        validation(format!(
            "Query condition missed key schema element: {}",
            keys.pk
        ))
    };
    let (pk_cond, sk_cond) = match cond {
        Cond::And(a, b) => {
            let a_is_pk =
                matches!(&**a, Cond::Compare(l, op, _) if op == "=" && is_attr(l, &keys.pk));
            if a_is_pk {
                (&**a, Some(&**b))
            } else {
                (&**b, Some(&**a))
            }
        }
        other => (other, None),
    };
    let pk = match pk_cond {
        Cond::Compare(l, op, r) if op == "=" && is_attr(l, &keys.pk) => operand_key(r, &keys.pk)?,
        _ => return Err(missing()),
    };
    let Some(sk_cond) = sk_cond else {
        return Ok((pk, SortCondition::Any));
    };
    let Some(sk) = &keys.sk else {
        return Err(validation(
            "Query key condition not supported: the table has no sort key",
        ));
    };
    let not_sk = || {
        validation(format!(
            "Query key condition not supported: expected a condition on the sort key {sk}"
        ))
    };
    let sort = match sk_cond {
        Cond::Compare(l, op, r) if is_attr(l, sk) => {
            let v = operand_key(r, sk)?;
            match op.as_str() {
                "=" => SortCondition::Eq(v),
                "<" => SortCondition::Lt(v),
                "<=" => SortCondition::Le(v),
                ">" => SortCondition::Gt(v),
                ">=" => SortCondition::Ge(v),
                _ => {
                    return Err(validation(format!(
                        "Unsupported operator on KeyConditionExpression: {op}"
                    )));
                }
            }
        }
        Cond::Between(l, lo, hi) if is_attr(l, sk) => {
            SortCondition::Between(operand_key(lo, sk)?, operand_key(hi, sk)?)
        }
        Cond::BeginsWith(l, v) if is_attr(l, sk) => SortCondition::BeginsWith(operand_key(v, sk)?),
        _ => return Err(not_sk()),
    };
    Ok((pk, sort))
}

/// Keeps the top-level attributes named in a projection expression.
fn project(item: &Value, projection: &str, b: Bindings<'_>) -> Result<Value, Failure> {
    let mut out = Map::new();
    for part in projection.split(',') {
        let name = part.trim();
        let name = if name.starts_with('#') {
            b.names
                .and_then(|m| m.get(name))
                .and_then(Value::as_str)
                .ok_or_else(|| validation(format!("An expression attribute name used in the document path is not defined; attribute name: {name}")))?
        } else {
            name.split(['.', '[']).next().unwrap_or(name)
        };
        if let Some(v) = item.get(name) {
            out.insert(name.to_string(), v.clone());
        }
    }
    Ok(Value::Object(out))
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
        let (flavor, op) = if let Some(op) = resource.strip_prefix("arn:aws:states:::dynamodb:") {
            (
                if op == "query" {
                    Flavor::Sdk
                } else {
                    Flavor::Optimized
                },
                op,
            )
        } else if let Some(op) = resource.strip_prefix("arn:aws:states:::aws-sdk:dynamodb:") {
            (Flavor::Sdk, op)
        } else {
            return Err(TaskFailure {
                error: "States.Runtime".into(),
                cause: Some(format!("{resource} is not a DynamoDB resource")),
            });
        };
        let op = op.split('.').next().unwrap_or(op);
        match self.run(op, &input) {
            Ok(mut out) => {
                if flavor == Flavor::Optimized
                    && let Value::Object(m) = &mut out
                {
                    let (http, response) = sdk_metadata();
                    m.insert("SdkHttpMetadata".into(), http);
                    m.insert("SdkResponseMetadata".into(), response);
                }
                Ok(out)
            }
            Err(f) => {
                let request_id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
                Err(match flavor {
                    Flavor::Optimized => TaskFailure {
                        error: match f.code {
                            "ValidationException" => "DynamoDB.AmazonDynamoDBException".into(),
                            code => format!("DynamoDB.{code}"),
                        },
                        cause: Some(format!(
                            "{} (Service: AmazonDynamoDBv2; Status Code: 400; Error Code: {}; Request ID: {request_id}; Proxy: null)",
                            f.message, f.code
                        )),
                    },
                    Flavor::Sdk => TaskFailure {
                        error: match f.code {
                            "ValidationException" => "DynamoDb.DynamoDbException".into(),
                            code => format!("DynamoDb.{code}"),
                        },
                        cause: Some(format!(
                            "{} (Service: DynamoDb, Status Code: 400, Request ID: {request_id})",
                            f.message
                        )),
                    },
                })
            }
        }
    }
}

/// Where the `events:putEvents` integration puts entries: the local event bus ([`crate::runtime::LocalEventBus`]) or a test double.
#[async_trait::async_trait]
pub trait PutEventsTarget: Send + Sync {
    /// Puts one EventBridge event (full envelope) on the bus named `bus`.
    async fn put(&self, bus: &str, event: Value) -> Result<(), String>;
}

/// The `arn:aws:states:::events:putEvents` task handler.
pub struct EventsTasks {
    bus: Arc<dyn PutEventsTarget>,
    default_bus: String,
}

impl std::fmt::Debug for EventsTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventsTasks")
    }
}

impl EventsTasks {
    /// Entries without `EventBusName` go to `default_bus`.
    pub fn new(bus: Arc<dyn PutEventsTarget>, default_bus: impl Into<String>) -> Self {
        EventsTasks {
            bus,
            default_bus: default_bus.into(),
        }
    }

    /// Registers `arn:aws:states:::events:putEvents` (and its SDK form).
    pub fn register(self: Arc<Self>, resources: &mut Resources) {
        resources.register("arn:aws:states:::events:putEvents", self.clone());
        resources.register("arn:aws:states:::aws-sdk:eventbridge:putEvents", self);
    }

    /// Builds the envelope for one entry, or the entry's error code and message.
    fn envelope(&self, entry: &Value) -> Result<(String, Value), (String, String)> {
        let field = |name: &str| {
            entry
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let source = field("Source").ok_or((
            "InvalidArgument".to_string(),
            "Parameter Source is not valid. Reason: Source is a required argument.".to_string(),
        ))?;
        let detail_type = field("DetailType").ok_or((
            "InvalidArgument".to_string(),
            "Parameter DetailType is not valid. Reason: DetailType is a required argument."
                .to_string(),
        ))?;
        let detail = match entry.get("Detail") {
            Some(Value::Object(m)) => Value::Object(m.clone()),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(v @ Value::Object(_)) => v,
                _ => return Err(("MalformedDetail".into(), "Detail is malformed.".into())),
            },
            None => {
                return Err((
                    "InvalidArgument".into(),
                    "Parameter Detail is not valid. Reason: Detail is a required argument.".into(),
                ));
            }
            Some(_) => return Err(("MalformedDetail".into(), "Detail is malformed.".into())),
        };
        let bus = field("EventBusName").map_or(self.default_bus.clone(), |b| {
            crate::template::event_bus_name(b).to_string()
        });
        let time = match field("Time") {
            Some(t) => chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| {
                    (
                        "InvalidArgument".to_string(),
                        format!("Parameter Time is not valid: {t}"),
                    )
                })?
                .with_timezone(&chrono::Utc),
            None => chrono::Utc::now(),
        };
        let id = uuid::Uuid::new_v4().to_string();
        let event = json!({
            "version": "0",
            "id": id,
            "detail-type": detail_type,
            "source": source,
            "account": ACCOUNT_ID,
            "time": time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": REGION,
            "resources": entry.get("Resources").cloned().unwrap_or_else(|| json!([])),
            "detail": detail,
        });
        Ok((bus, event))
    }
}

#[async_trait::async_trait]
impl TaskHandler for EventsTasks {
    async fn invoke(
        &self,
        resource: &str,
        input: Value,
        _ctx: &TaskContext,
    ) -> Result<Value, TaskFailure> {
        let sdk = resource.contains(":aws-sdk:");
        let Some(entries) = input
            .get("Entries")
            .and_then(Value::as_array)
            .filter(|e| !e.is_empty() && e.len() <= 10)
        else {
            return Err(TaskFailure {
                error: if sdk { "EventBridge.EventBridgeException" } else { "EventBridge.AmazonEventBridgeException" }.into(),
                cause: Some("1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length less than or equal to 10 and greater than or equal to 1".into()),
            });
        };
        let mut results = Vec::with_capacity(entries.len());
        let mut failed = 0;
        for entry in entries {
            let outcome = match self.envelope(entry) {
                Ok((bus, event)) => {
                    let id = event["id"].as_str().unwrap_or_default().to_string();
                    match self.bus.put(&bus, event).await {
                        Ok(()) => Ok(id),
                        Err(e) => Err(("InternalFailure".to_string(), e)),
                    }
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(id) => results.push(json!({"EventId": id})),
                Err((code, message)) => {
                    failed += 1;
                    results.push(json!({"ErrorCode": code, "ErrorMessage": message}));
                }
            }
        }
        let out = json!({"Entries": results, "FailedEntryCount": failed});
        if failed > 0 && !sdk {
            // The optimized integration fails the task when any entry failed.
            return Err(TaskFailure {
                error: "EventBridge.FailedEntry".into(),
                cause: Some(out.to_string()),
            });
        }
        Ok(out)
    }
}

/// What `DescribeExecution` says of one execution (what `.sync` integrations return).
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionDescription {
    /// Execution ARN.
    pub execution_arn: String,
    /// State machine ARN.
    pub state_machine_arn: String,
    /// Execution name.
    pub name: String,
    /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED.
    pub status: String,
    /// Start time (RFC 3339).
    pub start_date: String,
    /// Stop time, once closed.
    pub stop_date: Option<String>,
    /// The input.
    pub input: Value,
    /// The output (SUCCEEDED).
    pub output: Option<Value>,
    /// Error name (FAILED, TIMED_OUT).
    pub error: Option<String>,
    /// Cause.
    pub cause: Option<String>,
}

impl ExecutionDescription {
    /// The `DescribeExecution` response; with `json_payloads` (`.sync:2`) `Input` and `Output`
    /// are JSON values, otherwise (`.sync`) JSON text.
    pub fn to_json(&self, json_payloads: bool) -> Value {
        let payload = |v: &Value| {
            if json_payloads {
                v.clone()
            } else {
                Value::String(v.to_string())
            }
        };
        let mut out = json!({
            "ExecutionArn": self.execution_arn,
            "StateMachineArn": self.state_machine_arn,
            "Name": self.name,
            "Status": self.status,
            "StartDate": self.start_date,
            "Input": payload(&self.input),
            "InputDetails": {"Included": true},
            "RedriveCount": 0,
            "RedriveStatus": "NOT_REDRIVABLE",
        });
        if let Some(d) = &self.stop_date {
            out["StopDate"] = Value::String(d.clone());
        }
        if let Some(o) = &self.output {
            out["Output"] = payload(o);
            out["OutputDetails"] = json!({"Included": true});
        }
        if let Some(e) = &self.error {
            out["Error"] = Value::String(e.clone());
        }
        if let Some(c) = &self.cause {
            out["Cause"] = Value::String(c.clone());
        }
        out
    }
}

/// Why `StartExecution` was refused (Step Functions' error codes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartExecutionError {
    /// A closed execution (or one with another input) has this name.
    #[error("Execution Already Exists: '{0}'")]
    ExecutionAlreadyExists(String),
    /// Not a valid execution name.
    #[error("Invalid Name: '{0}'")]
    InvalidName(String),
    /// No such state machine.
    #[error("State Machine Does Not Exist: '{0}'")]
    StateMachineDoesNotExist(String),
    /// The local runtime failed (store, shutdown).
    #[error("{0}")]
    Internal(String),
}

impl StartExecutionError {
    fn code(&self) -> &'static str {
        match self {
            StartExecutionError::ExecutionAlreadyExists(_) => "ExecutionAlreadyExists",
            StartExecutionError::InvalidName(_) => "InvalidName",
            StartExecutionError::StateMachineDoesNotExist(_) => "StateMachineDoesNotExist",
            StartExecutionError::Internal(_) => "InternalFailure",
        }
    }
}

/// The local Step Functions as the `states:startExecution` integration sees it.
#[async_trait::async_trait]
pub trait LocalStepFunctions: Send + Sync {
    /// Starts an execution of `state_machine_arn` named `name` (a UUID when `None`). With
    /// `wait`, returns once it is closed; otherwise once started (status RUNNING).
    ///
    /// As in Step Functions, a name that a running execution with the same input has is not an
    /// error: that execution is returned (and waited for); a name that a closed execution has
    /// is `ExecutionAlreadyExists`.
    async fn start_execution(
        &self,
        state_machine_arn: &str,
        name: Option<&str>,
        input: Value,
        wait: bool,
    ) -> Result<ExecutionDescription, StartExecutionError>;
}

/// The `arn:aws:states:::states:startExecution` task handler, with `.sync` and `.sync:2`, and
/// the SDK form `arn:aws:states:::aws-sdk:sfn:startExecution`.
///
/// Errors are named as Step Functions names them: `StepFunctions.<Code>Exception` (optimized)
/// or `Sfn.<Code>Exception` (SDK). A `.sync` child that does not succeed fails the task with
/// `States.TaskFailed` and its `DescribeExecution` JSON as Cause.
pub struct StatesTasks {
    sfn: Arc<dyn LocalStepFunctions>,
}

impl std::fmt::Debug for StatesTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatesTasks")
    }
}

impl StatesTasks {
    /// A handler over the local Step Functions.
    pub fn new(sfn: Arc<dyn LocalStepFunctions>) -> Self {
        StatesTasks { sfn }
    }

    /// Registers the four resource ARNs it serves.
    pub fn register(self: Arc<Self>, resources: &mut Resources) {
        for arn in [
            "arn:aws:states:::states:startExecution",
            "arn:aws:states:::states:startExecution.sync",
            "arn:aws:states:::states:startExecution.sync:2",
            "arn:aws:states:::aws-sdk:sfn:startExecution",
        ] {
            resources.register(arn, self.clone());
        }
    }
}

#[async_trait::async_trait]
impl TaskHandler for StatesTasks {
    async fn invoke(
        &self,
        resource: &str,
        input: Value,
        _ctx: &TaskContext,
    ) -> Result<Value, TaskFailure> {
        let sdk = resource.contains(":aws-sdk:");
        let request_id = uuid::Uuid::new_v4();
        let fail = |code: &str, message: String| TaskFailure {
            error: if sdk {
                format!("Sfn.{code}Exception")
            } else {
                format!("StepFunctions.{code}Exception")
            },
            cause: Some(format!(
                "{message} (Service: {}; Status Code: 400; Error Code: {code}; Request ID: {request_id}; Proxy: null)",
                if sdk { "Sfn" } else { "AWSStepFunctions" }
            )),
        };
        let machine = input
            .get("StateMachineArn")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                fail(
                    "InvalidArn",
                    "1 validation error detected: Value null at 'stateMachineArn' failed to satisfy constraint: Member must not be null".into(),
                )
            })?;
        let name = input.get("Name").and_then(Value::as_str);
        let payload = match input.get("Input") {
            None | Some(Value::Null) => json!({}),
            Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| {
                fail(
                    "InvalidExecutionInput",
                    format!("Invalid State Machine Execution Input: '{e}'"),
                )
            })?,
            Some(v) => v.clone(),
        };
        let wait = resource.ends_with(".sync") || resource.ends_with(".sync:2");
        let described = self
            .sfn
            .start_execution(machine, name, payload, wait)
            .await
            .map_err(|e| fail(e.code(), e.to_string()))?;
        if !wait {
            return Ok(json!({
                "ExecutionArn": described.execution_arn,
                "StartDate": described.start_date,
            }));
        }
        let json_payloads = resource.ends_with(".sync:2");
        let out = described.to_json(json_payloads);
        if described.status != "SUCCEEDED" {
            return Err(TaskFailure {
                error: "States.TaskFailed".into(),
                cause: Some(out.to_string()),
            });
        }
        Ok(out)
    }
}
