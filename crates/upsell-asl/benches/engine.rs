//! Engine throughput: a 10-state Pass/Choice/Assign machine (executions/s and state
//! transitions/s on one core) and a 10,000-item Map with MaxConcurrency 40 over a no-op task.
//! The `five_state` group runs benches/five-state.asl.json, which benches/bench-moto.sh also
//! runs on moto's interpreter to report the ratio.
//! Run with `cargo bench -p upsell-asl --bench engine`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use std::sync::Arc;
use upsell_asl::{
    Engine, ParseOptions, Resources, StartOptions, TaskContext, TaskFailure, TaskHandler, parse,
};

/// Ten states: Pass, Choice and Assign, one loop-free path through all of them.
fn ten_state_machine() -> Value {
    json!({
        "StartAt": "Init",
        "States": {
            "Init": {"Type": "Pass", "Result": {"n": 1, "tier": "gold"}, "Assign": {"count": 0}, "Next": "Route"},
            "Route": {"Type": "Choice", "Choices": [
                {"Variable": "$.tier", "StringEquals": "gold", "Next": "Gold"},
                {"Variable": "$.n", "NumericGreaterThan": 5, "Next": "Big"}
            ], "Default": "Small"},
            "Gold": {"Type": "Pass", "Parameters": {"tier.$": "$.tier", "n.$": "$.n"}, "Assign": {"count.$": "$.n"}, "Next": "Check"},
            "Big": {"Type": "Pass", "Next": "Check"},
            "Small": {"Type": "Pass", "Next": "Check"},
            "Check": {"Type": "Choice", "Choices": [
                {"And": [{"Variable": "$.n", "NumericEquals": 1}, {"Variable": "$.tier", "IsString": true}], "Next": "Mark"}
            ], "Default": "Small2"},
            "Small2": {"Type": "Pass", "Next": "Mark"},
            "Mark": {"Type": "Pass", "Result": "marked", "ResultPath": "$.mark", "Next": "Shape"},
            "Shape": {"Type": "Pass", "Parameters": {"customer.$": "$.tier", "flag.$": "$.mark"}, "Assign": {"last.$": "$.customer"}, "Next": "Out"},
            "Out": {"Type": "Pass", "OutputPath": "$.customer", "Next": "Done"},
            "Done": {"Type": "Succeed"}
        }
    })
}

struct Noop;

#[async_trait::async_trait]
impl TaskHandler for Noop {
    async fn invoke(
        &self,
        _resource: &str,
        input: Value,
        _ctx: &TaskContext,
    ) -> Result<Value, TaskFailure> {
        Ok(input)
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let engine = Engine::builder().build();
    let sm = parse(&ten_state_machine(), ParseOptions::default()).expect("valid");
    // Transitions per execution: Init, Route, Gold, Check, Mark, Shape, Out, Done = 8 states.
    let mut g = c.benchmark_group("pass_choice_assign");
    g.throughput(Throughput::Elements(8));
    g.bench_function("execution (8 transitions)", |b| {
        b.iter(|| {
            let r = rt.block_on(engine.execute(
                &sm,
                json!({}),
                StartOptions {
                    name: Some("b".into()),
                    ..Default::default()
                },
            ));
            assert!(matches!(r.outcome, upsell_asl::Outcome::Succeeded(_)));
        })
    });
    g.finish();

    // The machine benches/bench-moto.sh also runs on moto (5 states entered per execution).
    let five = parse(
        &serde_json::from_str(include_str!("five-state.asl.json")).expect("five-state.asl.json"),
        ParseOptions::default(),
    )
    .expect("valid");
    let mut g = c.benchmark_group("five_state");
    g.throughput(Throughput::Elements(1));
    g.bench_function("execution", |b| {
        b.iter(|| {
            let r = rt.block_on(engine.execute(
                &five,
                json!({}),
                StartOptions {
                    name: Some("f".into()),
                    ..Default::default()
                },
            ));
            assert!(matches!(r.outcome, upsell_asl::Outcome::Succeeded(_)));
        })
    });
    g.finish();

    let mut resources = Resources::new();
    resources.register(
        "arn:aws:lambda:us-east-1:123456789012:function:noop",
        Arc::new(Noop),
    );
    let engine = Engine::builder().resources(resources).build();
    let map = parse(
        &json!({
            "StartAt": "Fan",
            "States": {"Fan": {"Type": "Map", "MaxConcurrency": 40, "ItemProcessor": {
                "StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:noop", "End": true}}
            }, "End": true}}
        }),
        ParseOptions::default(),
    )
    .expect("valid");
    let items: Value = (0..10_000)
        .map(|i| json!({"i": i}))
        .collect::<Vec<_>>()
        .into();
    let mut g = c.benchmark_group("map");
    g.sample_size(10);
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("10000 items, MaxConcurrency 40, no-op task", |b| {
        b.iter(|| {
            let r = rt.block_on(engine.execute(
                &map,
                items.clone(),
                StartOptions {
                    name: Some("m".into()),
                    ..Default::default()
                },
            ));
            assert!(matches!(r.outcome, upsell_asl::Outcome::Succeeded(_)));
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
