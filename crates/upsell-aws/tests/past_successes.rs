//! Accepted messages into the knowledge base over the wire: the S3 objects on moto (document,
//! sidecar, content types, a rewrite replaces them), and the data-source sync against canned
//! Bedrock Agent answers (the request it sends, a running job tolerated, other failures mapped).

mod common;

use common::{Canned, CannedServer, builder, moto_endpoint, unique};
use serde_json::json;
use upsell_aws::outcomes::{MARKDOWN, Sync};
use upsell_core::events::{CustomerEvent, EventEnvelope, UpsellResponded};
use upsell_core::features::{CustomerFeatures, replay};
use upsell_core::message::MessageRecord;
use upsell_core::outcome::{PastSuccess, PastSuccessStore};
use upsell_core::ports::PortError;

fn success(message: &str) -> PastSuccess {
    let response: CustomerEvent = serde_json::from_value(json!({
        "id": "r1", "source": "com.greenleaf.messaging", "detail-type": "UpsellResponded",
        "time": "2025-10-10T10:00:00Z",
        "detail": {"customerId": "c1", "messageEventId": "evt-1", "response": "accepted"}
    }))
    .unwrap();
    let CustomerEvent::UpsellResponded(response) = response else {
        unreachable!()
    };
    let response: EventEnvelope<UpsellResponded> = response;
    let record: MessageRecord = serde_json::from_value(json!({
        "eventId": "evt-1", "customerId": "c1", "status": "approved", "message": message,
        "recommendedService": "gutter-cleaning", "offering": "gutter_cleaning",
        "generator": {"agentId": "upsell-generator", "version": "1.0.0"},
        "judge": {"agentId": "upsell-judge", "version": "1.0.0"},
        "attempts": [], "totalUsage": {"inputTokens": 1, "outputTokens": 1},
        "costUsd": 0.0, "latencyMs": 1, "createdAt": "2025-10-08T09:00:00Z"
    }))
    .unwrap();
    let service: CustomerEvent = serde_json::from_value(json!({
        "id": "s1", "source": "t", "detail-type": "ServiceCompleted",
        "time": "2025-10-01T00:00:00Z",
        "detail": {"customerId": "c1", "service": "lawn-care", "serviceDate": "2025-10-01",
                   "priceCents": 6500}
    }))
    .unwrap();
    let features: CustomerFeatures = replay("c1", &[service]).unwrap().pop().unwrap();
    PastSuccess::from_accepted(&response, Some(&record), &features).unwrap()
}

async fn object(s3: &upsell_aws::sdk::s3::Client, bucket: &str, key: &str) -> (String, String) {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let content_type = out.content_type().unwrap_or_default().to_owned();
    let bytes = out.body.collect().await.unwrap().into_bytes();
    (String::from_utf8(bytes.to_vec()).unwrap(), content_type)
}

#[tokio::test]
async fn an_accepted_message_is_written_to_the_knowledge_base_bucket_on_moto() {
    let Some(endpoint) =
        moto_endpoint("an_accepted_message_is_written_to_the_knowledge_base_bucket_on_moto")
    else {
        return;
    };
    let bucket = unique("kb");
    let ctx = builder(&endpoint)
        .past_messages(bucket.clone(), None)
        .build()
        .await;
    ctx.s3()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let store = ctx.past_successes().unwrap();

    let first = success("Hi Dana, the maples are dropping: shall we clear your gutters?");
    assert_eq!(store.write(&first).await.unwrap(), Sync::Off);

    let (text, content_type) = object(ctx.s3(), &bucket, "past-messages/accepted/evt-1.md").await;
    assert_eq!(text, first.text);
    assert_eq!(content_type, MARKDOWN);
    let (sidecar, content_type) = object(
        ctx.s3(),
        &bucket,
        "past-messages/accepted/evt-1.md.metadata.json",
    )
    .await;
    assert_eq!(content_type, "application/json");
    let sidecar: serde_json::Value = serde_json::from_str(&sidecar).unwrap();
    assert_eq!(sidecar["metadataAttributes"]["doc_type"], "past_message");
    assert_eq!(sidecar["metadataAttributes"]["offering"], "gutter_cleaning");
    assert_eq!(sidecar["metadataAttributes"]["outcome"], "accepted");
    assert_eq!(sidecar["metadataAttributes"]["message_event_id"], "evt-1");

    // The same message again (a redelivered response) replaces the objects, adds none.
    let again = success("Hi Dana, gutters before the leaves fall?");
    store.add(&again).await.unwrap();
    let (text, _) = object(ctx.s3(), &bucket, "past-messages/accepted/evt-1.md").await;
    assert!(text.contains("gutters before the leaves fall"), "{text}");
    let listed = ctx
        .s3()
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("past-messages/")
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(
        keys,
        [
            "past-messages/accepted/evt-1.md",
            "past-messages/accepted/evt-1.md.metadata.json"
        ]
    );
}

#[tokio::test]
async fn a_missing_bucket_is_a_not_found_error_on_moto() {
    let Some(endpoint) = moto_endpoint("a_missing_bucket_is_a_not_found_error_on_moto") else {
        return;
    };
    let ctx = builder(&endpoint)
        .past_messages(unique("no-such-bucket"), None)
        .build()
        .await;
    let err = ctx
        .past_successes()
        .unwrap()
        .add(&success("Hi"))
        .await
        .unwrap_err();
    assert!(matches!(err, PortError::NotFound(_)), "{err:?}");
    assert!(err.to_string().contains("S3 PutObject"), "{err}");
}

fn ingestion_job() -> Canned {
    Canned::json(
        202,
        json!({"ingestionJob": {
            "knowledgeBaseId": "KB12345678", "dataSourceId": "DS12345678",
            "ingestionJobId": "JOB1234567", "status": "STARTING",
            "startedAt": "2025-10-10T10:00:01Z", "updatedAt": "2025-10-10T10:00:01Z"
        }})
        .to_string(),
    )
}

fn put_ok() -> Canned {
    Canned {
        status: 200,
        headers: vec![("etag".into(), "\"abc\"".into())],
        body: String::new(),
        delay: std::time::Duration::ZERO,
    }
}

async fn synced_store(server: &CannedServer) -> upsell_aws::S3PastSuccesses {
    builder(&server.url)
        .knowledge_base_id("KB12345678")
        .past_messages("kb-bucket", Some("DS12345678".into()))
        .build()
        .await
        .past_successes()
        .unwrap()
}

#[tokio::test]
async fn the_data_source_sync_starts_after_both_objects_are_written() {
    let server = CannedServer::start(vec![put_ok(), put_ok(), ingestion_job()]);
    let store = synced_store(&server).await;
    let sync = store.write(&success("Hi Dana")).await.unwrap();
    assert_eq!(sync, Sync::Started("JOB1234567".into()));

    let sent = server.requests();
    let calls: Vec<(&str, &str)> = sent
        .iter()
        .map(|r| (r.method.as_str(), r.path.split('?').next().unwrap()))
        .collect();
    assert_eq!(
        calls,
        [
            (
                "PUT",
                "/kb-bucket/past-messages/accepted/evt-1.md.metadata.json"
            ),
            ("PUT", "/kb-bucket/past-messages/accepted/evt-1.md"),
            (
                "PUT",
                "/knowledgebases/KB12345678/datasources/DS12345678/ingestionjobs"
            ),
        ]
    );
    let body = sent[2].json();
    assert_eq!(
        body["description"],
        "accepted message past-messages/accepted/evt-1"
    );
    let auth = |i: usize| {
        sent[i]
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert!(auth(1).contains("/s3/aws4_request"), "{}", auth(1));
    assert!(auth(2).contains("/bedrock/aws4_request"), "{}", auth(2));
}

#[tokio::test]
async fn a_running_ingestion_job_leaves_the_sync_pending_without_failing_the_write() {
    for code in ["ConflictException", "ServiceQuotaExceededException"] {
        let server = CannedServer::start(vec![
            put_ok(),
            put_ok(),
            Canned::aws_error(409, code, "An ingestion job is already in progress"),
        ]);
        let sync = synced_store(&server)
            .await
            .write(&success("Hi Dana"))
            .await
            .unwrap();
        assert_eq!(sync, Sync::Pending(code.into()));
    }
}

#[tokio::test]
async fn other_sync_failures_are_errors_with_their_stable_kind() {
    let cases = [
        (
            Canned::aws_error(403, "AccessDeniedException", "not allowed"),
            "Invalid",
        ),
        (
            Canned::aws_error(429, "ThrottlingException", "slow down"),
            "Throttled",
        ),
        (
            Canned::aws_error(404, "ResourceNotFoundException", "no such data source"),
            "NotFound",
        ),
    ];
    for (canned, kind) in cases {
        let server = CannedServer::start(vec![put_ok(), put_ok(), canned]);
        let err = synced_store(&server)
            .await
            .write(&success("Hi Dana"))
            .await
            .unwrap_err();
        let got = match &err {
            PortError::Invalid(_) => "Invalid",
            PortError::Throttled(_) => "Throttled",
            PortError::NotFound(_) => "NotFound",
            _ => "other",
        };
        assert_eq!(got, kind, "{err:?}");
        assert!(err.to_string().contains("StartIngestionJob"), "{err}");
    }
}

#[tokio::test]
async fn the_sync_needs_the_knowledge_base_id() {
    let ctx = builder("http://127.0.0.1:9")
        .past_messages("kb-bucket", Some("DS12345678".into()))
        .build()
        .await;
    let err = ctx.past_successes().unwrap_err();
    assert_eq!(
        err,
        upsell_aws::ConfigError::MissingEnv(upsell_aws::env::KNOWLEDGE_BASE_ID)
    );
}
