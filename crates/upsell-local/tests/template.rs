//! The SAM template reader against tests/fixtures/sam/template.yaml.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use upsell_local::{
    LoadOptions, RetryPolicy, SamTemplate, TargetInput, TargetKind, TemplateError,
    apply_substitutions,
};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sam/template.yaml")
}

fn load(overrides: &[(&str, &str)]) -> Result<SamTemplate, TemplateError> {
    let options = LoadOptions {
        parameter_overrides: overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        stack_name: Some("upsell-test".into()),
    };
    SamTemplate::load(fixture(), &options)
}

fn parse(text: &str) -> Result<SamTemplate, TemplateError> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sam");
    SamTemplate::parse(
        text,
        Path::new("inline.yaml"),
        &base,
        &LoadOptions::default(),
    )
}

#[test]
fn functions_map_to_workers_with_resolved_environment() {
    let t = load(&[]).expect("fixture loads");
    let workers: BTreeMap<_, _> = t
        .functions
        .iter()
        .map(|f| (f.logical_id.as_str(), f.worker.as_str()))
        .collect();
    assert_eq!(
        workers,
        BTreeMap::from([
            ("EnrichFunction", "enrich"),
            ("GenerateFunction", "generate"),
            ("JudgeFunction", "judge"),
            ("KbRetrieveFunction", "kb-retrieve"),
            ("PublishFunction", "publish"),
            ("SchemaCheckFunction", "schema-check"),
        ])
    );
    let enrich = t.function("EnrichFunction").unwrap();
    assert_eq!(
        enrich.arn,
        "arn:aws:lambda:us-east-1:000000000000:function:EnrichFunction"
    );
    assert_eq!(enrich.timeout_s, 10, "from Globals");
    assert_eq!(enrich.memory_mb, 256);
    assert_eq!(enrich.environment["FEATURE_TABLE"], "FeatureStoreTable");
    assert_eq!(
        enrich.environment["FEATURE_TABLE_ARN"],
        "arn:aws:dynamodb:us-east-1:000000000000:table/FeatureStoreTable"
    );
    assert_eq!(enrich.environment["ENV"], "dev", "Globals variables merged");
    assert_eq!(enrich.environment["MESSAGES_TABLE"], "MessagesTable");

    let generate = t.function("GenerateFunction").unwrap();
    assert_eq!(generate.timeout_s, 60);
    assert_eq!(
        generate.environment["RUST_LOG"], "debug",
        "function overrides Globals; !If on a condition"
    );
    assert_eq!(generate.environment["CONCURRENCY"], "2", "!FindInMap");
    assert_eq!(generate.environment["DEBUG_ONLY"], "1");
    assert_eq!(
        generate.environment["MODEL_ID"],
        "anthropic.claude-3-haiku-20240307-v1:0"
    );

    let publish = t.function("PublishFunction").unwrap();
    assert_eq!(publish.environment["EVENT_BUS_NAME"], "EventBus");
    assert_eq!(
        publish.environment["EVENT_BUS_ARN"],
        "arn:aws:events:us-east-1:000000000000:event-bus/EventBus"
    );
    assert_eq!(publish.environment["SOURCE"], "com.homeservices.upsell.dev");
    assert_eq!(
        publish.environment["STACK"],
        "upsell-test-us-east-1-${Literal}"
    );
    assert_eq!(publish.environment["JOINED"], "a:dev:y");
    assert_eq!(t.function("KbRetrieveFunction").unwrap().timeout_s, 20);
}

#[test]
fn parameter_overrides_change_conditions_and_novalue_removes_a_variable() {
    let t = load(&[("Env", "prod")]).expect("prod loads");
    let generate = t.function("GenerateFunction").unwrap();
    assert_eq!(generate.environment["RUST_LOG"], "warn");
    assert_eq!(generate.environment["CONCURRENCY"], "50");
    assert!(
        !generate.environment.contains_key("DEBUG_ONLY"),
        "AWS::NoValue removes it"
    );
    assert_eq!(t.parameters["Env"], json!("prod"));

    let err = load(&[("Env", "staging")]).expect_err("not an allowed value");
    assert!(err.to_string().contains("AllowedValues"), "{err}");
    let err = load(&[("Nope", "x")]).expect_err("undeclared parameter");
    assert!(err.to_string().contains("Parameters.Nope"), "{err}");
}

#[test]
fn state_machine_definition_gets_substitutions_as_step_functions_does() {
    let t = load(&[]).expect("fixture loads");
    let sm = t.state_machine("UpsellMessageStateMachine").unwrap();
    assert_eq!(
        sm.arn,
        "arn:aws:states:us-east-1:000000000000:stateMachine:UpsellMessageStateMachine"
    );
    assert!(
        sm.definition_path
            .as_ref()
            .unwrap()
            .ends_with("upsell-message.asl.json")
    );
    assert_eq!(sm.substitutions.len(), 9);
    assert_eq!(sm.substitutions["MessagesTableName"], "MessagesTable");
    assert_eq!(
        sm.substitutions["AgentRegistryTableName"],
        "AgentRegistryTable"
    );
    assert_eq!(sm.substitutions["EventBusName"], "EventBus");
    let asl: Value = serde_json::from_str(&sm.definition).expect("JSON");
    assert_eq!(
        asl["States"]["Generate"]["Resource"],
        "arn:aws:lambda:us-east-1:000000000000:function:GenerateFunction"
    );
    assert_eq!(
        asl["States"]["ClaimEvent"]["Parameters"]["TableName"],
        "MessagesTable"
    );
    assert_eq!(asl["States"]["Publish"]["Parameters"]["bus"], "EventBus");
    assert!(!sm.definition.contains("${"), "no placeholder left");
}

#[test]
fn eventbridge_rules_come_from_state_machine_events_and_rule_resources() {
    let t = load(&[]).expect("fixture loads");
    assert_eq!(
        t.rules.len(),
        3,
        "{:#?}",
        t.rules.iter().map(|r| &r.logical_id).collect::<Vec<_>>()
    );
    let sam_rule = t
        .rules
        .iter()
        .find(|r| r.logical_id == "UpsellMessageStateMachineCustomerEvents")
        .expect("SAM event rule");
    assert_eq!(sam_rule.event_bus, "EventBus");
    assert!(sam_rule.enabled);
    assert_eq!(
        sam_rule.pattern_json,
        json!({"source": [{"prefix": "com.homeservices."}], "detail-type": ["ServiceCompleted", "QuoteRequested"]})
    );
    assert!(
        sam_rule
            .pattern
            .matches(&json!({"source": "com.homeservices.crm", "detail-type": "QuoteRequested"}))
    );
    assert!(
        !sam_rule
            .pattern
            .matches(&json!({"source": "com.other", "detail-type": "QuoteRequested"}))
    );
    let target = &sam_rule.targets[0];
    assert_eq!(
        target.kind,
        TargetKind::StateMachine("UpsellMessageStateMachine".into())
    );
    assert_eq!(target.input, TargetInput::Event);
    assert_eq!(
        target.retry_policy,
        RetryPolicy {
            maximum_event_age_s: 3600,
            maximum_retry_attempts: 10
        }
    );
    assert_eq!(
        target.dead_letter_arn.as_deref(),
        Some("arn:aws:sqs:us-east-1:000000000000:UpsellMessageStateMachineCustomerEventsQueue")
    );

    let backfill = t
        .rules
        .iter()
        .find(|r| r.logical_id == "BackfillRule")
        .unwrap();
    assert_eq!(
        backfill.event_bus, "EventBus",
        "bus ARN reduced to its name"
    );
    assert_eq!(backfill.targets.len(), 2);
    assert_eq!(
        backfill.targets[0].kind,
        TargetKind::StateMachine("UpsellMessageStateMachine".into())
    );
    assert_eq!(
        backfill.targets[0].input,
        TargetInput::Path("$.detail".into())
    );
    assert_eq!(backfill.targets[0].retry_policy, RetryPolicy::default());
    assert_eq!(
        backfill.targets[0].dead_letter_arn.as_deref(),
        Some("arn:aws:sqs:us-east-1:000000000000:IngestDLQ")
    );
    assert_eq!(
        backfill.targets[1].kind,
        TargetKind::Function("PublishFunction".into())
    );
    assert_eq!(
        backfill.targets[1].input,
        TargetInput::Constant(json!({"fixed": true}))
    );

    let disabled = t
        .rules
        .iter()
        .find(|r| r.logical_id == "DisabledRule")
        .unwrap();
    assert!(!disabled.enabled);
    assert_eq!(disabled.event_bus, "default");
    assert_eq!(disabled.targets[0].kind, TargetKind::Other);
}

#[test]
fn tables_and_buses_are_listed() {
    let t = load(&[]).expect("fixture loads");
    let messages = t.table("MessagesTable").unwrap();
    assert_eq!(messages.partition_key, "pk");
    assert_eq!(messages.sort_key.as_deref(), Some("sk"));
    assert_eq!(t.table("FeatureStoreTable").unwrap().sort_key, None);
    assert_eq!(t.event_buses, vec!["EventBus".to_string()]);
}

#[test]
fn substitutions_follow_step_functions_rules() {
    let subs = BTreeMap::from([
        ("A".to_string(), "arn:a".to_string()),
        ("B".to_string(), "bee".to_string()),
    ]);
    let table: &[(&str, Result<&str, &str>)] = &[
        (
            r#"{"x":"${A}","y":"${B}-${A}"}"#,
            Ok(r#"{"x":"arn:a","y":"bee-arn:a"}"#),
        ),
        ("no placeholders $.path {}", Ok("no placeholders $.path {}")),
        ("${A}${A}", Ok("arn:aarn:a")),
        ("${C} and ${D} and ${C}", Err("${C}, ${D} (known: A, B)")),
        ("${A", Err("unterminated placeholder")),
    ];
    for (input, expected) in table {
        match (apply_substitutions(input, &subs), expected) {
            (Ok(out), Ok(want)) => assert_eq!(&out, want, "{input}"),
            (Err(e), Err(want)) => assert!(e.contains(want), "{input}: {e}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn bad_templates_get_errors_that_say_where() {
    let cases: &[(&str, &str)] = &[
        ("Resources: [", "inline.yaml is not valid YAML"),
        (
            "Description: x",
            "Resources: the template has no Resources mapping",
        ),
        (
            "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties: {}\n",
            "Resources.F.Properties.CodeUri: a function needs a CodeUri",
        ),
        (
            "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: w\n      Environment: {Variables: {X: !Ref Missing}}\n",
            "Resources.F.Properties.Environment.Variables.X.Ref: Ref to \"Missing\"",
        ),
        (
            "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: w\n      Environment: {Variables: {X: !ImportValue shared}}\n",
            "Fn::ImportValue cannot be resolved locally",
        ),
        (
            "Resources:\n  S:\n    Type: AWS::Serverless::StateMachine\n    Properties:\n      Definition: {StartAt: A, States: {A: {Type: Task, Resource: '${Fn}', End: true}}}\n",
            "no DefinitionSubstitutions entry: ${Fn}",
        ),
        (
            "Resources:\n  S:\n    Type: AWS::Serverless::StateMachine\n    Properties:\n      DefinitionUri: ../state-machines/missing.asl.json\n",
            "cannot read",
        ),
        (
            "Resources:\n  S:\n    Type: AWS::Serverless::StateMachine\n    Properties:\n      Definition: {StartAt: A}\n      Events:\n        E:\n          Type: EventBridgeRule\n          Properties:\n            Pattern: {source: com.x}\n",
            "Resources.S.Properties.Events.E.Properties.Pattern: invalid event pattern at source",
        ),
        (
            "Resources:\n  R:\n    Type: AWS::Events::Rule\n    Properties:\n      EventPattern: {source: [x]}\n      Targets: [{Id: T}]\n",
            "Resources.R.Properties.Targets[0]: a target needs an Arn",
        ),
    ];
    for (text, expected) in cases {
        let err = parse(text).expect_err(text);
        assert!(err.to_string().contains(expected), "{text}\n  -> {err}");
    }
}

#[test]
fn inline_definitions_and_conditional_resources() {
    let t = parse(
        "Parameters:\n  On: {Type: String, Default: 'no'}\nConditions:\n  Enabled: !Equals [!Ref On, 'yes']\nResources:\n  F:\n    Type: AWS::Serverless::Function\n    Condition: Enabled\n    Properties: {CodeUri: w}\n  S:\n    Type: AWS::Serverless::StateMachine\n    Properties:\n      Definition:\n        StartAt: A\n        States: {A: {Type: Pass, Result: {n: 1}, End: true}}\n",
    )
    .expect("parses");
    assert!(t.functions.is_empty(), "F's condition is false");
    let def: Value = serde_json::from_str(&t.state_machine("S").unwrap().definition).unwrap();
    assert_eq!(def["States"]["A"]["Result"], json!({"n": 1}));
}

#[test]
fn a_ref_to_the_alias_sam_publishes_is_the_qualified_state_machine_arn() {
    let text = |alias_ref: &str| {
        format!(
            r#"
Resources:
  Child:
    Type: AWS::Serverless::StateMachine
    Properties:
      AutoPublishAlias: live
      Definition: {{"StartAt": "A", "States": {{"A": {{"Type": "Pass", "End": true}}}}}}
  Parent:
    Type: AWS::Serverless::StateMachine
    Properties:
      Definition: {{"StartAt": "A", "States": {{"A": {{"Type": "Pass", "End": true}}}}}}
      DefinitionSubstitutions:
        ChildArn: !Ref {alias_ref}
"#
        )
    };
    let t = parse(&text("ChildAliaslive")).expect("the generated alias id resolves");
    assert_eq!(
        t.state_machine("Parent").unwrap().substitutions["ChildArn"],
        "arn:aws:states:us-east-1:000000000000:stateMachine:Child:live"
    );
    for wrong in ["ChildAliasprod", "ParentAliaslive"] {
        let err = parse(&text(wrong)).expect_err("no such alias");
        assert!(err.to_string().contains(wrong), "{err}");
    }
}
