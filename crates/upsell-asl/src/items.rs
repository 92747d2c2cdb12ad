//! Distributed Map data: `ItemReader` over JSON / JSONL / CSV objects from a pluggable
//! object source, and `ResultWriter` to a pluggable sink.

use crate::template::Scope;
use serde_json::{Map, Value, json};

/// Reads objects (S3 locally: a directory, SQLite, memory...).
pub trait ItemSource: Send + Sync {
    /// The bytes of `bucket`/`key`.
    fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, String>;
}

/// Receives Map results when a `ResultWriter` is set.
pub trait ResultSink: Send + Sync {
    /// Stores `body` under `bucket`/`key`.
    fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), String>;
}

fn arg(params: &Value, name: &str, scope: &Scope<'_>) -> Option<String> {
    if let Some(v) = params.get(name).and_then(Value::as_str) {
        return Some(v.to_string());
    }
    let p = params.get(format!("{name}.$"))?.as_str()?;
    let path = crate::jsonpath::JsonPath::parse(p).ok()?;
    scope
        .read(&path)
        .and_then(|v| v.as_str().map(str::to_string))
}

/// Reads the items an `ItemReader` describes.
pub fn read_items(
    src: &dyn ItemSource,
    reader: &Value,
    scope: &Scope<'_>,
) -> Result<Vec<Value>, String> {
    let params = reader
        .get("Parameters")
        .or_else(|| reader.get("Arguments"))
        .cloned()
        .unwrap_or(Value::Null);
    let bucket = arg(&params, "Bucket", scope).ok_or("ItemReader needs Parameters.Bucket")?;
    let key = arg(&params, "Key", scope).ok_or("ItemReader needs Parameters.Key")?;
    let bytes = src.get(&bucket, &key)?;
    let text = String::from_utf8(bytes).map_err(|e| format!("{bucket}/{key} is not UTF-8: {e}"))?;
    let cfg = reader.get("ReaderConfig").cloned().unwrap_or(json!({}));
    let fmt = cfg
        .get("InputType")
        .and_then(Value::as_str)
        .unwrap_or("JSON");
    let mut items = match fmt {
        "JSON" => match serde_json::from_str::<Value>(&text)
            .map_err(|e| format!("{bucket}/{key}: invalid JSON: {e}"))?
        {
            Value::Array(a) => a,
            _ => return Err(format!("{bucket}/{key}: expected a JSON array")),
        },
        "JSONL" => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .map_err(|e| format!("{bucket}/{key}: invalid JSON line: {e}"))
            })
            .collect::<Result<_, _>>()?,
        "CSV" => {
            let mut lines = text.lines().filter(|l| !l.is_empty());
            let headers: Vec<String> = match cfg.get("CSVHeaders").and_then(Value::as_array) {
                Some(h)
                    if cfg.get("CSVHeaderLocation").and_then(Value::as_str) == Some("GIVEN") =>
                {
                    h.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                }
                _ => split_csv(lines.next().ok_or(format!("{bucket}/{key}: empty CSV"))?),
            };
            lines
                .map(|l| {
                    let cells = split_csv(l);
                    let mut m = Map::new();
                    for (i, h) in headers.iter().enumerate() {
                        m.insert(
                            h.clone(),
                            Value::String(cells.get(i).cloned().unwrap_or_default()),
                        );
                    }
                    Value::Object(m)
                })
                .collect()
        }
        other => return Err(format!("unsupported ItemReader InputType '{other}'")),
    };
    if let Some(max) = cfg.get("MaxItems").and_then(Value::as_u64) {
        items.truncate(max as usize);
    }
    Ok(items)
}

fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Writes Map results as `ResultWriter` asks and returns the state result AWS returns.
pub fn write_results(
    sink: &dyn ResultSink,
    writer: &Value,
    execution_arn: &str,
    results: &[Value],
) -> Result<Value, String> {
    let params = writer
        .get("Parameters")
        .or_else(|| writer.get("Arguments"))
        .cloned()
        .unwrap_or(Value::Null);
    let bucket = params
        .get("Bucket")
        .and_then(Value::as_str)
        .ok_or("ResultWriter needs Parameters.Bucket")?;
    let prefix = params.get("Prefix").and_then(Value::as_str).unwrap_or("");
    let run = uuid::Uuid::new_v4().to_string();
    let key = format!("{prefix}{run}/SUCCEEDED_0.json");
    let body = serde_json::to_vec(results).map_err(|e| e.to_string())?;
    sink.put(bucket, &key, body)?;
    let manifest = format!("{prefix}{run}/manifest.json");
    sink.put(bucket, &manifest, serde_json::to_vec(&json!({"DestinationBucket": bucket, "MapRunArn": format!("{execution_arn}:{run}"), "ResultFiles": {"SUCCEEDED": [{"Key": key, "Size": results.len()}]}})).map_err(|e| e.to_string())?)?;
    Ok(
        json!({"MapRunArn": format!("{execution_arn}:{run}"), "ResultWriterDetails": {"Bucket": bucket, "Key": manifest}}),
    )
}
