//! DynamoDB adapters and the item helpers they share. Every table has a string partition key
//! `pk` and sort key `sk`; records are stored as one JSON attribute plus the few top-level
//! attributes that keys, indexes and the state machine's direct integrations read.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::de::DeserializeOwned;
use upsell_core::ports::PortError;

pub mod contacts;
pub mod counters;
pub mod drift;
pub mod evaluations;
pub mod features;
pub mod messages;
pub mod receipts;
pub mod registry;
pub mod tables;

/// A DynamoDB item.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// Partition key attribute.
pub const PK: &str = "pk";
/// Sort key attribute.
pub const SK: &str = "sk";

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute (DynamoDB sends numbers as text).
pub(crate) fn n(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

pub(crate) fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// Serialises a record for the `record`/`spec` attribute.
pub(crate) fn to_json<T: Serialize>(value: &T, what: &str) -> Result<String, PortError> {
    serde_json::to_string(value)
        .map_err(|e| PortError::Invalid(format!("cannot serialise {what}: {e}")))
}

/// Reads a JSON attribute back; a missing or unreadable one is reported with the item's key.
pub(crate) fn from_json<T: DeserializeOwned>(
    item: &Item,
    attr: &str,
    table: &str,
) -> Result<T, PortError> {
    let where_ = || {
        format!(
            "item (pk={:?}, sk={:?}) of table {table}",
            get_s(item, PK).unwrap_or("?"),
            get_s(item, SK).unwrap_or("?")
        )
    };
    let raw = get_s(item, attr).ok_or_else(|| {
        PortError::Other(format!("{} has no string attribute `{attr}`", where_()))
    })?;
    serde_json::from_str(raw).map_err(|e| {
        PortError::Other(format!(
            "{} has an unreadable `{attr}` attribute: {e}",
            where_()
        ))
    })
}

/// The serde name of a unit enum variant (e.g. `MessageStatus::Approved` -> `approved`).
pub(crate) fn serde_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

/// A JSON value as a DynamoDB attribute (objects -> M, arrays -> L, numbers -> N), so records
/// stay readable and queryable in the console. `None` for JSON `null` members is not needed:
/// null becomes `NULL`.
pub(crate) fn json_to_attr(value: &serde_json::Value) -> AttributeValue {
    use serde_json::Value;
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(num) => AttributeValue::N(num.to_string()),
        Value::String(text) => AttributeValue::S(text.clone()),
        Value::Array(items) => AttributeValue::L(items.iter().map(json_to_attr).collect()),
        Value::Object(map) => AttributeValue::M(
            map.iter()
                .map(|(k, v)| (k.clone(), json_to_attr(v)))
                .collect(),
        ),
    }
}

/// The JSON value of a DynamoDB attribute written by [`json_to_attr`].
pub(crate) fn attr_to_json(value: &AttributeValue) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    Ok(match value {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::S(text) => Value::String(text.clone()),
        AttributeValue::N(raw) => {
            let number = if let Ok(i) = raw.parse::<i64>() {
                serde_json::Number::from(i)
            } else if let Ok(u) = raw.parse::<u64>() {
                serde_json::Number::from(u)
            } else {
                raw.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .ok_or_else(|| format!("number {raw:?} is not representable"))?
            };
            Value::Number(number)
        }
        AttributeValue::L(items) => {
            Value::Array(items.iter().map(attr_to_json).collect::<Result<_, _>>()?)
        }
        AttributeValue::M(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), attr_to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        AttributeValue::Ss(items) => {
            Value::Array(items.iter().cloned().map(Value::String).collect())
        }
        other => return Err(format!("unsupported attribute type {other:?}")),
    })
}
