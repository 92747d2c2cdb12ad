//! EMF metric lines: the exact JSON CloudWatch Logs turns into metrics.

use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use upsell_core::ports::{MetricDatum, MetricUnit, Metrics, dims};
use upsell_lambda::EmfMetrics;

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn lines(&self) -> Vec<Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn datum(name: &str, value: f64) -> MetricDatum {
    MetricDatum {
        name: name.into(),
        value,
        unit: MetricUnit::Milliseconds,
        dimensions: vec![],
        timestamp: Utc.with_ymd_and_hms(2026, 5, 1, 10, 0, 0).unwrap(),
    }
}

#[test]
fn one_line_per_datum_with_agent_dimensions() {
    let sink = Sink::default();
    let metrics =
        EmfMetrics::with_writer("UpsellFlow", Box::new(sink.clone())).with_property("Stage", "dev");
    metrics.record(
        datum("GenerateLatency", 812.0)
            .with_dim(dims::AGENT_ID, "upsell-generator")
            .with_dim(dims::AGENT_VERSION, "1.0.0"),
    );
    let lines = sink.lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0],
        json!({
            "_aws": {
                "Timestamp": 1777629600000u64,
                "CloudWatchMetrics": [{
                    "Namespace": "UpsellFlow",
                    "Dimensions": [["AgentId", "AgentVersion"]],
                    "Metrics": [{"Name": "GenerateLatency", "Unit": "Milliseconds"}]
                }]
            },
            "AgentId": "upsell-generator",
            "AgentVersion": "1.0.0",
            "Stage": "dev",
            "GenerateLatency": 812.0
        })
    );
}

#[test]
fn no_dimensions_is_one_empty_dimension_set() {
    let sink = Sink::default();
    let metrics = EmfMetrics::with_writer("UpsellFlow", Box::new(sink.clone()));
    let mut d = datum("EventsQuarantined", 1.0);
    d.unit = MetricUnit::Count;
    metrics.record(d);
    let line = &sink.lines()[0];
    assert_eq!(
        line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([[]])
    );
    assert_eq!(
        line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
        "Count"
    );
}

#[test]
fn data_emf_cannot_express_are_dropped_not_written() {
    let sink = Sink::default();
    let metrics = EmfMetrics::with_writer("UpsellFlow", Box::new(sink.clone()));
    metrics.record(datum("Latency", f64::NAN));
    metrics.record(datum("Clash", 1.0).with_dim("Clash", "x"));
    metrics.record(datum("Dup", 1.0).with_dim("A", "1").with_dim("A", "2"));
    metrics.record(datum("_aws", 1.0));
    assert!(sink.lines().is_empty());
    assert!(metrics.document(&datum("Latency", f64::INFINITY)).is_err());
}
