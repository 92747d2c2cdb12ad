//! sam/template.yaml and this crate must agree: table keys and indexes (what
//! `tables::create_table` builds for tests), the environment variables the adapters read, and
//! the function logical ids the local runtime relies on.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_norway::Value;
use upsell_aws::{TableKind, env};

fn template() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../sam/template.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_norway::from_str(&text).expect("sam/template.yaml is YAML")
}

fn resource<'a>(t: &'a Value, id: &str) -> &'a Value {
    &t["Resources"][id]
}

fn text(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v:?}"))
}

#[test]
fn tables_match_the_adapters() {
    let t = template();
    for (id, kind) in [
        ("MessagesTable", TableKind::Messages),
        ("AgentRegistryTable", TableKind::AgentRegistry),
        ("FeatureStoreTable", TableKind::FeatureStore),
        ("EvaluationsTable", TableKind::Evaluations),
        ("VersionCountersTable", TableKind::VersionCounters),
    ] {
        let props = &resource(&t, id)["Properties"];
        assert_eq!(text(&props["BillingMode"]), "PAY_PER_REQUEST", "{id}");
        let keys: Vec<(&str, &str)> = props["KeySchema"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|k| (text(&k["AttributeName"]), text(&k["KeyType"])))
            .collect();
        assert_eq!(keys, [("pk", "HASH"), ("sk", "RANGE")], "{id}");
        let in_template: BTreeSet<(String, String, String, String)> = props
            .get("GlobalSecondaryIndexes")
            .and_then(Value::as_sequence)
            .map(|v| v.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|g| {
                let ks = g["KeySchema"].as_sequence().unwrap();
                (
                    text(&g["IndexName"]).to_owned(),
                    text(&ks[0]["AttributeName"]).to_owned(),
                    text(&ks[1]["AttributeName"]).to_owned(),
                    text(&g["Projection"]["ProjectionType"]).to_owned(),
                )
            })
            .collect();
        let in_code: BTreeSet<(String, String, String, String)> = kind
            .indexes()
            .iter()
            .map(|(n, p, s, proj)| {
                (
                    n.to_string(),
                    p.to_string(),
                    s.to_string(),
                    proj.to_string(),
                )
            })
            .collect();
        assert_eq!(in_template, in_code, "{id} indexes");
        assert_eq!(
            props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
            Value::Bool(true),
            "{id}"
        );
        assert_eq!(
            props["SSESpecification"]["SSEEnabled"],
            Value::Bool(true),
            "{id}"
        );
    }
}

#[test]
fn functions_get_the_variables_the_adapters_read() {
    let t = template();
    let vars = &t["Globals"]["Function"]["Environment"]["Variables"];
    for name in [
        env::MESSAGES_TABLE,
        env::AGENT_REGISTRY_TABLE,
        env::FEATURE_STORE_TABLE,
        env::VERSION_COUNTERS_TABLE,
        env::EVENT_BUS_NAME,
        env::KNOWLEDGE_BASE_ID,
        env::KB_HYBRID_SEARCH,
        env::EMBEDDING_MODEL_ID,
    ] {
        assert!(vars.get(name).is_some(), "Globals sets no {name}");
    }
}

#[test]
fn workers_and_state_machine_keep_their_logical_ids() {
    let t = template();
    for (id, dir) in [
        ("SchemaCheckFunction", "schema-check"),
        ("EnrichFunction", "enrich"),
        ("KbRetrieveFunction", "kb-retrieve"),
        ("GenerateFunction", "generate"),
        ("JudgeFunction", "judge"),
        ("PublishFunction", "publish"),
    ] {
        let r = resource(&t, id);
        assert_eq!(text(&r["Type"]), "AWS::Serverless::Function", "{id}");
        assert_eq!(
            text(&r["Properties"]["CodeUri"]),
            format!("../workers/{dir}"),
            "{id}"
        );
        assert_eq!(
            text(&r["Metadata"]["BuildMethod"]),
            "rust-cargolambda",
            "{id}"
        );
    }
    let sm = resource(&t, "UpsellMessageStateMachine");
    assert_eq!(
        text(&sm["Properties"]["DefinitionUri"]),
        "../state-machines/upsell-message.asl.json"
    );
    let subs = sm["Properties"]["DefinitionSubstitutions"]
        .as_mapping()
        .unwrap();
    let names: BTreeSet<&str> = subs.keys().map(text).collect();
    let want: BTreeSet<&str> = [
        "SchemaCheckFunctionArn",
        "EnrichFunctionArn",
        "KbRetrieveFunctionArn",
        "GenerateFunctionArn",
        "JudgeFunctionArn",
        "PublishFunctionArn",
        "MessagesTableName",
        "AgentRegistryTableName",
        "EventBusName",
    ]
    .into();
    assert_eq!(names, want);
    let rule = &sm["Properties"]["Events"]["UpstreamEvents"];
    assert_eq!(text(&rule["Type"]), "EventBridgeRule");
    assert!(rule["Properties"].get("DeadLetterConfig").is_some());
    assert!(rule["Properties"].get("RetryPolicy").is_some());
}

#[test]
fn kb_retrieve_gets_the_reranking_model_and_its_permissions() {
    let t = template();
    let param = &t["Parameters"]["KbRerankModelId"];
    assert_eq!(text(&param["Default"]), "amazon.rerank-v1:0");
    let allowed: BTreeSet<&str> = param["AllowedValues"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    assert_eq!(
        allowed,
        ["", "amazon.rerank-v1:0", "cohere.rerank-v3-5:0"].into()
    );
    let f = &resource(&t, "KbRetrieveFunction")["Properties"];
    let arn = &f["Environment"]["Variables"][env::KB_RERANK_MODEL_ARN];
    assert!(
        !arn.is_null(),
        "KbRetrieveFunction sets no {}",
        env::KB_RERANK_MODEL_ARN
    );
    // `!If [UseKbRerank, ARN, '']` as serde_norway reads a tagged value.
    let shown = format!("{arn:?}");
    assert!(shown.contains("UseKbRerank"), "{shown}");
    assert!(
        shown.contains("foundation-model/${KbRerankModelId}"),
        "{shown}"
    );
    let policies = format!("{:?}", f["Policies"]);
    for needle in ["bedrock:Retrieve", "bedrock:Rerank", "bedrock:InvokeModel"] {
        assert!(
            policies.contains(needle),
            "kb-retrieve's role lacks {needle}"
        );
    }
    let kb_role = format!(
        "{:?}",
        resource(&t, "KnowledgeBaseRole")["Properties"]["Policies"]
    );
    assert!(kb_role.contains("bedrock:Rerank"), "{kb_role}");
}

#[test]
fn only_the_publish_worker_adds_to_the_version_counters() {
    let t = template();
    let resources = t["Resources"].as_mapping().unwrap();
    let writers: Vec<&str> = resources
        .iter()
        .filter(|(_, r)| {
            let policies = format!("{:?}", r["Properties"]["Policies"]);
            policies.contains("VersionCountersTable") && policies.contains("dynamodb:UpdateItem")
        })
        .map(|(id, _)| text(id))
        .collect();
    assert_eq!(writers, ["PublishFunction"]);
}
