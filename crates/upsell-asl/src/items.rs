//! Distributed Map data: `ItemReader` over JSON / JSONL / CSV objects (`s3:getObject`) or
//! over the objects under a prefix (`s3:listObjectsV2`) from a pluggable object source, and
//! `ResultWriter` to a pluggable sink.

use crate::template::Scope;
use serde_json::{Map, Value, json};

/// `ItemReader` resource that reads one object's content.
pub const GET_OBJECT: &str = "arn:aws:states:::s3:getObject";
/// `ItemReader` resource that lists the objects under a prefix (one item per object).
pub const LIST_OBJECTS_V2: &str = "arn:aws:states:::s3:listObjectsV2";

/// One object as `ListObjectsV2` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, RFC 3339.
    pub last_modified: String,
    /// Entity tag (quoted, as S3 returns it).
    pub etag: String,
}

/// Reads objects (S3 locally: a directory, SQLite, memory...).
pub trait ItemSource: Send + Sync {
    /// The bytes of `bucket`/`key`.
    fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, String>;

    /// The objects of `bucket` whose key starts with `prefix`, in key order (UTF-8 binary
    /// order, as S3 lists them). The default source cannot list.
    fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>, String> {
        let _ = prefix;
        Err(format!(
            "listing objects of bucket {bucket} is not supported by this item source"
        ))
    }
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
    let cfg = reader.get("ReaderConfig").cloned().unwrap_or(json!({}));
    let resource = reader
        .get("Resource")
        .and_then(Value::as_str)
        .unwrap_or(GET_OBJECT);
    if resource == LIST_OBJECTS_V2 {
        let prefix = arg(&params, "Prefix", scope).unwrap_or_default();
        let mut items: Vec<Value> = src
            .list(&bucket, &prefix)?
            .into_iter()
            .map(|o| {
                json!({"Etag": o.etag, "Key": o.key, "LastModified": o.last_modified,
                       "Size": o.size, "StorageClass": "STANDARD"})
            })
            .collect();
        if let Some(max) = cfg.get("MaxItems").and_then(Value::as_u64) {
            items.truncate(max as usize);
        }
        return Ok(items);
    }
    if resource != GET_OBJECT {
        return Err(format!(
            "unsupported ItemReader Resource '{resource}' (supported: {GET_OBJECT}, {LIST_OBJECTS_V2})"
        ));
    }
    let key = arg(&params, "Key", scope).ok_or("ItemReader needs Parameters.Key")?;
    let bytes = src.get(&bucket, &key)?;
    let text = String::from_utf8(bytes).map_err(|e| format!("{bucket}/{key} is not UTF-8: {e}"))?;
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
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map_err(|e| format!("{bucket}/{key}: line {} is not JSON: {e}", i + 1))
            })
            .collect::<Result<_, _>>()?,
        "CSV" => read_csv(&text, &cfg).map_err(|e| format!("{bucket}/{key}: {e}"))?,
        other => return Err(format!("unsupported ItemReader InputType '{other}'")),
    };
    if let Some(max) = cfg.get("MaxItems").and_then(Value::as_u64) {
        items.truncate(max as usize);
    }
    Ok(items)
}

/// CSV rows as objects keyed by the header (`CSVHeaderLocation` `FIRST_ROW`, the default, or
/// `GIVEN` with `CSVHeaders`); every value is a string, as Step Functions reads them. Quoted
/// cells may hold commas, quotes and line breaks (RFC 4180).
pub fn read_csv(text: &str, cfg: &Value) -> Result<Vec<Value>, String> {
    let given = match cfg.get("CSVHeaderLocation").and_then(Value::as_str) {
        None | Some("FIRST_ROW") => None,
        Some("GIVEN") => Some(
            cfg.get("CSVHeaders")
                .and_then(Value::as_array)
                .ok_or("CSVHeaderLocation GIVEN needs CSVHeaders")?
                .iter()
                .map(|h| {
                    h.as_str()
                        .map(str::to_string)
                        .ok_or("CSVHeaders must be strings")
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => return Err(format!("unsupported CSVHeaderLocation '{other}'")),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rows = reader.records();
    let headers = match given {
        Some(h) => h,
        None => match rows.next() {
            Some(r) => r
                .map_err(|e| format!("invalid CSV header: {e}"))?
                .iter()
                .map(str::to_string)
                .collect(),
            None => return Err("empty CSV: no header row".into()),
        },
    };
    let mut items = Vec::new();
    for row in rows {
        let row = row.map_err(|e| format!("invalid CSV: {e}"))?;
        if row.len() == 1 && row.get(0) == Some("") {
            continue;
        }
        let mut m = Map::new();
        for (i, h) in headers.iter().enumerate() {
            m.insert(
                h.clone(),
                Value::String(row.get(i).unwrap_or_default().to_string()),
            );
        }
        items.push(Value::Object(m));
    }
    Ok(items)
}

/// Writes Map results as `ResultWriter` asks and returns the state result AWS returns: one
/// `SUCCEEDED_0.json` and one `FAILED_0.json` (a JSON array of child-execution entries each,
/// with `Output` or `Error`/`Cause`), and a `manifest.json` naming them, under
/// `<Prefix><map run id>/`. `failed[i]` says whether `results[i]` is a tolerated failure.
pub fn write_results(
    sink: &dyn ResultSink,
    writer: &Value,
    execution_arn: &str,
    results: &[Value],
    failed: &[bool],
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
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    let run = uuid::Uuid::new_v4().to_string();
    let map_run_arn = format!(
        "{}/{run}",
        execution_arn.replacen(":execution:", ":mapRun:", 1)
    );
    let mut files = Map::new();
    for (status, want_failed) in [("SUCCEEDED", false), ("FAILED", true)] {
        let entries: Vec<Value> = results
            .iter()
            .enumerate()
            .filter(|(i, _)| failed.get(*i).copied().unwrap_or(false) == want_failed)
            .map(|(i, r)| {
                let mut e = json!({"Name": i.to_string(), "Status": status});
                if want_failed {
                    e["Error"] = r.get("Error").cloned().unwrap_or(Value::Null);
                    e["Cause"] = r.get("Cause").cloned().unwrap_or(Value::Null);
                } else {
                    e["Output"] = Value::String(r.to_string());
                    e["OutputDetails"] = json!({"Included": true});
                }
                e
            })
            .collect();
        let mut listed = Vec::new();
        if !entries.is_empty() {
            let key = format!("{prefix}{run}/{status}_0.json");
            let body = serde_json::to_vec(&entries).map_err(|e| e.to_string())?;
            listed.push(json!({"Key": key, "Size": body.len()}));
            sink.put(bucket, &key, body)?;
        }
        files.insert(status.to_string(), Value::Array(listed));
    }
    files.insert("PENDING".into(), json!([]));
    let manifest = format!("{prefix}{run}/manifest.json");
    let body = json!({"DestinationBucket": bucket, "MapRunArn": map_run_arn, "ResultFiles": files});
    sink.put(
        bucket,
        &manifest,
        serde_json::to_vec(&body).map_err(|e| e.to_string())?,
    )?;
    Ok(
        json!({"MapRunArn": map_run_arn, "ResultWriterDetails": {"Bucket": bucket, "Key": manifest}}),
    )
}
