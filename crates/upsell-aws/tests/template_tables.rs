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
        ("WebhookReceiptsTable", TableKind::WebhookReceipts),
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

/// The webhook: an HTTP API route `POST /events` to the function, which gets the receipts table
/// and the secret it reads (and only the permissions it needs), the receipts expire by the
/// attribute the adapter writes, and the endpoint is an output.
#[test]
fn the_webhook_function_gets_its_route_resources_and_permissions() {
    let t = template();
    let f = resource(&t, "WebhookFunction");
    assert_eq!(text(&f["Properties"]["CodeUri"]), "../workers/webhook");
    assert_eq!(text(&f["Metadata"]["BuildMethod"]), "rust-cargolambda");
    assert_eq!(text(&f["Metadata"]["BuildProperties"]["Binary"]), "webhook");
    let vars = &f["Properties"]["Environment"]["Variables"];
    for (name, target) in [
        (env::WEBHOOK_RECEIPTS_TABLE, "WebhookReceiptsTable"),
        (env::WEBHOOK_SECRET_ARN, "WebhookSecret"),
    ] {
        let shown = format!("{:?}", vars[name]);
        assert!(shown.contains(target), "{name} = {shown}");
    }
    // The bus comes from Globals, like every function's.
    assert!(
        t["Globals"]["Function"]["Environment"]["Variables"]
            .get(env::EVENT_BUS_NAME)
            .is_some()
    );
    let route = &f["Properties"]["Events"]["PostEvents"];
    assert_eq!(text(&route["Type"]), "HttpApi");
    assert_eq!(text(&route["Properties"]["Method"]), "POST");
    assert_eq!(text(&route["Properties"]["Path"]), EVENTS_PATH);
    assert_eq!(text(&route["Properties"]["PayloadFormatVersion"]), "2.0");
    let api = resource(&t, "WebhookApi");
    assert_eq!(text(&api["Type"]), "AWS::Serverless::HttpApi");
    assert!(
        api["Properties"]["AccessLogSettings"]
            .get("DestinationArn")
            .is_some()
    );
    let throttling = &api["Properties"]["DefaultRouteSettings"];
    assert!(throttling.get("ThrottlingRateLimit").is_some());
    assert!(throttling.get("ThrottlingBurstLimit").is_some());

    let policies = format!("{:?}", f["Properties"]["Policies"]);
    for needle in [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "events:PutEvents",
        "secretsmanager:GetSecretValue",
    ] {
        assert!(
            policies.contains(needle),
            "the webhook's role lacks {needle}"
        );
    }
    for needless in ["dynamodb:Scan", "dynamodb:Query", "*"] {
        assert!(
            !policies.contains(&format!("\"{needless}\"")),
            "{needless} in {policies}"
        );
    }

    let table = &resource(&t, "WebhookReceiptsTable")["Properties"];
    assert_eq!(
        text(&table["TimeToLiveSpecification"]["AttributeName"]),
        upsell_aws::dynamo::receipts::TTL_ATTRIBUTE
    );
    assert_eq!(
        table["TimeToLiveSpecification"]["Enabled"],
        Value::Bool(true)
    );
    let secret = &resource(&t, "WebhookSecret")["Properties"];
    assert!(secret.get("KmsKeyId").is_some());
    assert!(secret.get("GenerateSecretString").is_some());
    let url = format!("{:?}", t["Outputs"]["WebhookEndpointUrl"]["Value"]);
    assert!(
        url.contains("${WebhookApi}.execute-api") && url.contains(EVENTS_PATH),
        "{url}"
    );
    assert!(t["Outputs"].get("WebhookSecretArn").is_some());
}

/// The route the webhook serves (`webhook::EVENTS_PATH`; upsell-aws does not depend on the
/// worker, so it is written once more here).
const EVENTS_PATH: &str = "/events";
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

/// Enrich writes accepted messages as past successes: it gets the bucket and the data source it
/// syncs, may write only under `past-messages/accepted/` (inside the past-messages data
/// source's prefix), read the answered message and start the sync; an hourly schedule starts
/// the sync a running job held back.
#[test]
fn enrich_writes_accepted_messages_into_the_past_messages_data_source() {
    let t = template();
    let f = &resource(&t, "EnrichFunction")["Properties"];
    let vars = &f["Environment"]["Variables"];
    for (name, target) in [
        (env::KNOWLEDGE_BASE_BUCKET, "KnowledgeBaseBucket"),
        (env::PAST_MESSAGES_DATA_SOURCE_ID, "PastMessagesDataSource"),
    ] {
        let shown = format!("{:?}", vars[name]);
        assert!(shown.contains(target), "{name} = {shown}");
    }
    let prefix = upsell_core::outcome::ACCEPTED_PREFIX;
    let source = &resource(&t, "PastMessagesDataSource")["Properties"];
    let included = format!(
        "{:?}",
        source["DataSourceConfiguration"]["S3Configuration"]["InclusionPrefixes"]
    );
    let data_source_prefix = prefix.split('/').next().unwrap();
    assert!(included.contains(data_source_prefix), "{included}");
    let policies = format!("{:?}", f["Policies"]);
    for needle in [
        "s3:PutObject",
        &format!("${{KnowledgeBaseBucket.Arn}}/{prefix}*"),
        "kms:GenerateDataKey",
        "bedrock:StartIngestionJob",
        "MessagesTable",
    ] {
        assert!(policies.contains(needle), "enrich's role lacks {needle}");
    }
    let schedule = format!(
        "{:?}",
        resource(&t, "PastMessagesSyncSchedule")["Properties"]
    );
    for needle in [
        "aws-sdk:bedrockagent:startIngestionJob",
        "PastMessagesDataSource.DataSourceId",
        "rate(1 hour)",
    ] {
        assert!(schedule.contains(needle), "{needle} in {schedule}");
    }
}

/// The customer vector index exists in every stage (no Condition) with the embedding's
/// dimension, Euclidean distance and the metadata the adapter filters on; enrich gets its names
/// and may only read, write and query that index.
#[test]
fn enrich_keeps_embeddings_in_the_customer_vector_index() {
    use upsell_aws::customer_index::meta;
    use upsell_core::features::{EMBEDDING_VERSION, embedding_len};
    let t = template();
    let bucket = resource(&t, "CustomerVectorBucket");
    let index = resource(&t, "CustomerVectorIndex");
    for (id, r) in [
        ("CustomerVectorBucket", bucket),
        ("CustomerVectorIndex", index),
    ] {
        assert!(
            r.get("Condition").is_none(),
            "{id} must exist in every stage"
        );
    }
    let props = &index["Properties"];
    assert_eq!(text(&props["IndexName"]), EMBEDDING_VERSION);
    assert_eq!(props["Dimension"].as_u64(), Some(embedding_len() as u64));
    assert_eq!(text(&props["DistanceMetric"]), "euclidean");
    assert_eq!(text(&props["DataType"]), "float32");
    let non_filterable: Vec<&str> = props["MetadataConfiguration"]["NonFilterableMetadataKeys"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    assert_eq!(non_filterable, [meta::AS_OF]);
    assert!(format!("{:?}", props["VectorBucketArn"]).contains("CustomerVectorBucket"));

    let f = &resource(&t, "EnrichFunction")["Properties"];
    let vars = &f["Environment"]["Variables"];
    assert_eq!(
        format!("{:?}", vars[env::CUSTOMER_VECTOR_BUCKET]),
        format!("{:?}", bucket["Properties"]["VectorBucketName"]),
        "{} names the customer vector bucket",
        env::CUSTOMER_VECTOR_BUCKET
    );
    assert_eq!(text(&vars[env::CUSTOMER_VECTOR_INDEX]), EMBEDDING_VERSION);
    let statements = f["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|p| p.get("Statement").and_then(Value::as_sequence))
        .flatten()
        .collect::<Vec<_>>();
    let vector_statements: Vec<&&Value> = statements
        .iter()
        .filter(|s| format!("{:?}", s["Action"]).contains("s3vectors:"))
        .collect();
    assert_eq!(vector_statements.len(), 1, "one S3 Vectors statement");
    let s = vector_statements[0];
    let actions: BTreeSet<&str> = s["Action"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    assert_eq!(
        actions,
        BTreeSet::from([
            "s3vectors:GetVectors",
            "s3vectors:PutVectors",
            "s3vectors:QueryVectors"
        ])
    );
    let target = format!("{:?}", s["Resource"]);
    assert!(target.contains("CustomerVectorIndex.IndexArn"), "{target}");
}
