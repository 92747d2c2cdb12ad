//! [`Metrics`] as CloudWatch Embedded Metric Format (EMF): one JSON line per data point on
//! stdout, which CloudWatch Logs turns into metrics (no `PutMetricData` call, no extra latency,
//! nothing to retry). Dimensions are the datum's own, in order (e.g. `State`, `AgentId`,
//! `AgentVersion`). The namespace is `UPSELL_METRICS_NAMESPACE` (one per deployment stage, set
//! by the SAM template), and each line carries the stage (`UPSELL_STAGE`) as a property.
//!
//! ```json
//! {"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"UpsellFlow",
//!   "Dimensions":[["AgentId","AgentVersion"]],"Metrics":[{"Name":"StateLatency","Unit":"Milliseconds"}]}]},
//!  "AgentId":"upsell-generator","AgentVersion":"1.0.0","StateLatency":812.0}
//! ```

use std::io::Write;
use std::sync::Mutex;

use serde_json::{Map, Value, json};
use upsell_core::ports::{MetricDatum, Metrics};

/// The variable naming the CloudWatch namespace.
pub const METRICS_NAMESPACE_VAR: &str = "UPSELL_METRICS_NAMESPACE";
/// The variable naming the deployment stage.
pub const STAGE_VAR: &str = "UPSELL_STAGE";
/// The namespace when [`METRICS_NAMESPACE_VAR`] is unset.
pub const DEFAULT_NAMESPACE: &str = "UpsellFlow";

/// EMF allows at most 30 dimensions in a dimension set.
pub const MAX_DIMENSIONS: usize = 30;

/// Writes EMF lines to stdout (Lambda) or any writer (tests).
pub struct EmfMetrics {
    namespace: String,
    properties: Vec<(String, String)>,
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for EmfMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmfMetrics")
            .field("namespace", &self.namespace)
            .field("properties", &self.properties)
            .finish_non_exhaustive()
    }
}

impl EmfMetrics {
    /// EMF lines on stdout, in `namespace`.
    pub fn stdout(namespace: impl Into<String>) -> Self {
        Self::with_writer(namespace, Box::new(std::io::stdout()))
    }

    /// EMF lines on stdout in the namespace of [`METRICS_NAMESPACE_VAR`] (default
    /// [`DEFAULT_NAMESPACE`]), with a `Stage` property from [`STAGE_VAR`] when set.
    pub fn from_env() -> Self {
        let var = |name| {
            std::env::var(name)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        let metrics =
            Self::stdout(var(METRICS_NAMESPACE_VAR).unwrap_or_else(|| DEFAULT_NAMESPACE.into()));
        match var(STAGE_VAR) {
            Some(stage) => metrics.with_property("Stage", stage),
            None => metrics,
        }
    }

    /// EMF lines on `out`.
    pub fn with_writer(namespace: impl Into<String>, out: Box<dyn Write + Send>) -> Self {
        EmfMetrics {
            namespace: namespace.into(),
            properties: Vec::new(),
            out: Mutex::new(out),
        }
    }

    /// Adds a property (searchable in Logs Insights, not a dimension) to every line.
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((name.into(), value.into()));
        self
    }

    /// The EMF document for one datum; `Err` names why it cannot be expressed in EMF.
    pub fn document(&self, datum: &MetricDatum) -> Result<Value, String> {
        if datum.name.is_empty() || datum.name.starts_with('_') {
            return Err(format!("metric name {:?} is not allowed", datum.name));
        }
        if !datum.value.is_finite() {
            return Err(format!(
                "metric {} has a non-finite value {}",
                datum.name, datum.value
            ));
        }
        if datum.dimensions.len() > MAX_DIMENSIONS {
            return Err(format!(
                "metric {} has {} dimensions; EMF allows {MAX_DIMENSIONS}",
                datum.name,
                datum.dimensions.len()
            ));
        }
        let mut root = Map::new();
        let mut dims = Vec::with_capacity(datum.dimensions.len());
        for (name, value) in &datum.dimensions {
            if name == &datum.name || name == "_aws" || root.contains_key(name) {
                return Err(format!(
                    "metric {}: dimension {name:?} clashes with another member",
                    datum.name
                ));
            }
            root.insert(name.clone(), Value::String(value.clone()));
            dims.push(Value::String(name.clone()));
        }
        for (name, value) in &self.properties {
            if name != &datum.name && !root.contains_key(name) {
                root.insert(name.clone(), Value::String(value.clone()));
            }
        }
        root.insert(datum.name.clone(), json!(datum.value));
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": datum.timestamp.timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [dims],
                    "Metrics": [{"Name": datum.name, "Unit": datum.unit.as_str()}],
                }],
            }),
        );
        Ok(Value::Object(root))
    }
}

impl Metrics for EmfMetrics {
    fn record(&self, datum: MetricDatum) {
        match self.document(&datum) {
            Ok(doc) => {
                let mut line = doc.to_string();
                line.push('\n');
                // One write per line keeps lines whole when other output shares the stream.
                let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
                    lambda_runtime::tracing::warn!(metric = %datum.name, error = %e, "could not write EMF metric");
                }
            }
            Err(reason) => lambda_runtime::tracing::warn!(%reason, "metric dropped"),
        }
    }
}
