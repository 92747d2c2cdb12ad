//! Bedrock adapters over real HTTP against canned responses on 127.0.0.1: Converse, Retrieve
//! and Titan InvokeModel, with what they send, what they make of good answers, and how every
//! kind of failure maps to the stable error names.

mod common;

use std::time::Duration;

use common::{Canned, CannedServer, builder};
use serde_json::json;
use upsell_aws::{
    AwsContext, AwsContextBuilder, BedrockKnowledgeBase, BedrockModelProvider, ConfigError,
    TitanEmbedder,
};
use upsell_core::agent::InferenceConfig;
use upsell_core::kb::{
    Embedder, Filter, KnowledgeBase, MetaValue, RerankSettings, RetrieveRequest, SearchMode,
};
use upsell_core::message::StopReason;
use upsell_core::ports::{
    ChatMessage, ChatRole, ConverseRequest, ModelError, ModelProvider, PortError,
};

const MODEL: &str = "amazon.nova-pro-v1:0";

async fn context(server: &CannedServer) -> AwsContext {
    builder(&server.url)
        .knowledge_base_id("KB12345678")
        .embedding_model("amazon.titan-embed-text-v2:0", 256)
        .build()
        .await
}

async fn model(server: &CannedServer) -> BedrockModelProvider {
    context(server).await.model_provider()
}

fn request() -> ConverseRequest {
    ConverseRequest {
        model_id: MODEL.into(),
        system: "You write upsell messages.".into(),
        messages: vec![ChatMessage {
            role: ChatRole::User,
            text: "Write one for Dana.".into(),
        }],
        inference: InferenceConfig {
            temperature: 0.4,
            top_p: Some(0.9),
            max_tokens: 300,
        },
    }
}

fn converse_ok(text: &str, stop: &str) -> Canned {
    Canned::json(
        200,
        json!({
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": stop,
            "usage": {"inputTokens": 120, "outputTokens": 45, "totalTokens": 165},
            "metrics": {"latencyMs": 800}
        })
        .to_string(),
    )
}

#[tokio::test]
async fn converse_sends_the_agent_settings_and_reads_text_usage_and_stop_reason() {
    let server = CannedServer::start(vec![converse_ok("Hi Dana, ...", "end_turn")]);
    let response = model(&server).await.converse(&request()).await.unwrap();
    assert_eq!(response.text, "Hi Dana, ...");
    assert_eq!(response.usage.input_tokens, 120);
    assert_eq!(response.usage.output_tokens, 45);
    assert_eq!(response.stop_reason, StopReason::EndTurn);

    let sent = server.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method, "POST");
    // The model id is a path label, percent-encoded (`:` -> %3A).
    assert_eq!(sent[0].path, "/model/amazon.nova-pro-v1%3A0/converse");
    let body = sent[0].json();
    assert_eq!(
        body["system"],
        json!([{"text": "You write upsell messages."}])
    );
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [{"text": "Write one for Dana."}]}])
    );
    assert_eq!(body["inferenceConfig"]["maxTokens"], 300);
    assert!((body["inferenceConfig"]["temperature"].as_f64().unwrap() - 0.4).abs() < 1e-6);
    assert!((body["inferenceConfig"]["topP"].as_f64().unwrap() - 0.9).abs() < 1e-6);
    // Signed with SigV4 for the bedrock service.
    let auth = sent[0]
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(auth.contains("/bedrock/aws4_request"), "{auth}");
}

#[tokio::test]
async fn converse_maps_stop_reasons_and_joins_text_blocks() {
    let server = CannedServer::start(vec![Canned::json(
        200,
        json!({
            "output": {"message": {"role": "assistant", "content": [{"text": "Part one. "}, {"text": "Part two."}]}},
            "stopReason": "max_tokens",
            "usage": {"inputTokens": 1, "outputTokens": 300, "totalTokens": 301},
            "metrics": {"latencyMs": 1}
        })
        .to_string(),
    )]);
    let response = model(&server).await.converse(&request()).await.unwrap();
    assert_eq!(response.text, "Part one. Part two.");
    assert_eq!(response.stop_reason, StopReason::MaxTokens);
}

#[tokio::test]
async fn converse_throttling_429_is_model_throttled() {
    let server = CannedServer::start(vec![Canned::aws_error(
        429,
        "ThrottlingException",
        "Too many requests, please wait before trying again.",
    )]);
    let err = model(&server).await.converse(&request()).await.unwrap_err();
    assert!(matches!(err, ModelError::Throttled(_)), "{err:?}");
    assert_eq!(err.error_type(), "ModelThrottled");
    assert!(err.to_string().contains("ThrottlingException"), "{err}");
}

#[tokio::test]
async fn converse_server_errors_are_transient() {
    for canned in [
        Canned::aws_error(500, "InternalServerException", "boom"),
        Canned::aws_error(408, "ModelTimeoutException", "model took too long"),
        Canned::aws_error(503, "ServiceUnavailableException", "unavailable"),
        // No error code at all: the status decides.
        Canned::json(502, "<html>bad gateway</html>"),
    ] {
        let server = CannedServer::start(vec![canned.clone()]);
        let err = model(&server).await.converse(&request()).await.unwrap_err();
        assert!(
            matches!(err, ModelError::Transient(_)),
            "{canned:?} -> {err:?}"
        );
    }
}

#[tokio::test]
async fn converse_bad_requests_are_not_retried() {
    for (status, code) in [
        (400, "ValidationException"),
        (403, "AccessDeniedException"),
        (404, "ResourceNotFoundException"),
    ] {
        let server = CannedServer::start(vec![Canned::aws_error(status, code, "no")]);
        let err = model(&server).await.converse(&request()).await.unwrap_err();
        assert!(
            matches!(err, ModelError::InvalidRequest(_)),
            "{code} -> {err:?}"
        );
        assert!(!err.is_retryable());
    }
}

#[tokio::test]
async fn converse_malformed_body_is_an_error_never_a_message() {
    let server = CannedServer::start(vec![Canned::json(200, "{\"output\": {\"message\": ")]);
    let err = model(&server).await.converse(&request()).await.unwrap_err();
    assert!(matches!(err, ModelError::Transient(_)), "{err:?}");
    assert!(err.to_string().contains("unreadable response"), "{err}");
}

#[tokio::test]
async fn converse_answer_without_text_is_invalid_output() {
    let server = CannedServer::start(vec![converse_ok("   ", "content_filtered")]);
    let err = model(&server).await.converse(&request()).await.unwrap_err();
    assert!(matches!(err, ModelError::InvalidOutput(_)), "{err:?}");
    assert!(err.to_string().contains("content_filtered"), "{err}");
}

#[tokio::test]
async fn converse_attempt_timeout_is_transient() {
    let server = CannedServer::start(vec![
        converse_ok("late", "end_turn").delayed(Duration::from_secs(3)),
    ]);
    let provider = builder(&server.url)
        .attempt_timeout(Duration::from_millis(300))
        .build()
        .await
        .model_provider();
    let err = provider.converse(&request()).await.unwrap_err();
    assert!(matches!(err, ModelError::Transient(_)), "{err:?}");
}

#[tokio::test]
async fn converse_connection_refused_is_transient() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let provider = builder(&format!("http://127.0.0.1:{port}"))
        .build()
        .await
        .model_provider();
    let err = provider.converse(&request()).await.unwrap_err();
    assert!(matches!(err, ModelError::Transient(_)), "{err:?}");
}

#[tokio::test]
async fn sdk_retries_a_throttled_call_when_allowed_to() {
    let server = CannedServer::start(vec![
        Canned::aws_error(429, "ThrottlingException", "slow down"),
        converse_ok("Second time lucky", "end_turn"),
    ]);
    let provider = builder(&server.url)
        .max_attempts(2)
        .build()
        .await
        .model_provider();
    let response = provider.converse(&request()).await.unwrap();
    assert_eq!(response.text, "Second time lucky");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn converse_rejects_requests_bedrock_would_refuse_without_calling() {
    let server = CannedServer::start(vec![converse_ok("x", "end_turn")]);
    let provider = model(&server).await;
    let mut empty = request();
    empty.messages.clear();
    assert!(matches!(
        provider.converse(&empty).await,
        Err(ModelError::InvalidRequest(_))
    ));
    let mut no_model = request();
    no_model.model_id = " ".into();
    assert!(matches!(
        provider.converse(&no_model).await,
        Err(ModelError::InvalidRequest(_))
    ));
    assert!(server.requests().is_empty());
}

// ------------------------------------------------------------------------------------------
// Knowledge Base Retrieve.

fn retrieve_ok() -> Canned {
    Canned::json(
        200,
        json!({
            "retrievalResults": [
                {
                    "content": {"text": "Hi Sam, your lawn looked great...", "type": "TEXT"},
                    "location": {"type": "S3", "s3Location": {"uri": "s3://upsell-kb-dev/past-messages/pm-0042.md"}},
                    "score": 0.82,
                    "metadata": {
                        "x-amz-bedrock-kb-source-uri": "s3://upsell-kb-dev/past-messages/pm-0042.md",
                        "x-amz-bedrock-kb-chunk-id": "1%3A0%3AabcDEF",
                        "x-amz-bedrock-kb-data-source-id": "DS123",
                        "doc_type": "past_message",
                        "service": "lawn-care",
                        "year": 2024,
                        "has_pets": true,
                        "seasons": ["spring", "summer"]
                    }
                },
                {
                    "content": {"text": "Gutter cleaning: $149...", "type": "TEXT"},
                    "location": {"type": "S3", "s3Location": {"uri": "s3://upsell-kb-dev/catalogue/gutter_cleaning.md"}},
                    "score": 0.61
                }
            ]
        })
        .to_string(),
    )
}

#[tokio::test]
async fn retrieve_sends_k_and_the_filter_and_maps_results() {
    let server = CannedServer::start(vec![retrieve_ok()]);
    let kb = context(&server).await.knowledge_base().unwrap();
    let filter = Filter::AndAll(vec![
        Filter::Equals {
            key: "doc_type".into(),
            value: MetaValue::Text("past_message".into()),
        },
        Filter::GreaterThanOrEquals {
            key: "year".into(),
            value: 2023.0,
        },
        Filter::Equals {
            key: "has_pets".into(),
            value: MetaValue::Bool(true),
        },
    ]);
    let request = RetrieveRequest::new("lawn care upsell for a pet owner", 3)
        .with_filter(Some(filter))
        .with_mode(SearchMode::Vector);
    let chunks = kb.retrieve(&request).await.unwrap();

    let sent = server.requests();
    assert_eq!(sent[0].path, "/knowledgebases/KB12345678/retrieve");
    let body = sent[0].json();
    assert_eq!(
        body["retrievalQuery"]["text"],
        "lawn care upsell for a pet owner"
    );
    let search = &body["retrievalConfiguration"]["vectorSearchConfiguration"];
    assert_eq!(search["numberOfResults"], 3);
    assert_eq!(search["overrideSearchType"], "SEMANTIC");
    assert_eq!(
        search["filter"],
        json!({"andAll": [
            {"orAll": [
                {"equals": {"key": "doc_type", "value": "past_message"}},
                {"listContains": {"key": "doc_type", "value": "past_message"}}
            ]},
            {"greaterThanOrEquals": {"key": "year", "value": 2023}},
            {"equals": {"key": "has_pets", "value": true}}
        ]})
    );

    assert_eq!(chunks.len(), 2);
    let first = &chunks[0];
    assert_eq!(first.doc_id, "past-messages/pm-0042");
    assert_eq!(first.chunk_id, "1%3A0%3AabcDEF");
    assert_eq!(first.source, "s3://upsell-kb-dev/past-messages/pm-0042.md");
    assert!((first.score - 0.82).abs() < 1e-9);
    assert_eq!(first.text, "Hi Sam, your lawn looked great...");
    assert_eq!(
        first.metadata.get("service"),
        Some(&MetaValue::Text("lawn-care".into()))
    );
    assert_eq!(first.metadata.get("year"), Some(&MetaValue::Number(2024.0)));
    assert_eq!(first.metadata.get("has_pets"), Some(&MetaValue::Bool(true)));
    assert_eq!(
        first.metadata.get("seasons"),
        Some(&MetaValue::List(vec!["spring".into(), "summer".into()]))
    );
    assert!(
        first
            .metadata
            .keys()
            .all(|k| !k.starts_with("x-amz-bedrock-kb-")),
        "{:?}",
        first.metadata
    );
    let second = &chunks[1];
    assert_eq!(second.doc_id, "catalogue/gutter_cleaning");
    assert_eq!(second.chunk_id, "catalogue/gutter_cleaning#1");
    assert!(second.metadata.is_empty());
}

#[tokio::test]
async fn retrieve_single_filter_and_default_search_type() {
    let server = CannedServer::start(vec![Canned::json(200, r#"{"retrievalResults": []}"#)]);
    let kb = context(&server).await.knowledge_base().unwrap();
    let request = RetrieveRequest::new("anything", 5)
        .with_filter(Filter::from_pairs(&["season=winter"]).unwrap());
    assert!(kb.retrieve(&request).await.unwrap().is_empty());
    let body = server.requests()[0].json();
    let search = &body["retrievalConfiguration"]["vectorSearchConfiguration"];
    // Hybrid on a store without hybrid support: Bedrock's default strategy.
    assert!(search.get("overrideSearchType").is_none(), "{search}");
    assert_eq!(
        search["filter"],
        json!({"orAll": [
            {"equals": {"key": "season", "value": "winter"}},
            {"listContains": {"key": "season", "value": "winter"}}
        ]})
    );
    assert_eq!(search["numberOfResults"], 5);
}

#[tokio::test]
async fn retrieve_hybrid_when_the_store_supports_it() {
    let server = CannedServer::start(vec![Canned::json(200, r#"{"retrievalResults": []}"#)]);
    let kb =
        BedrockKnowledgeBase::new(context(&server).await.bedrock_agent().clone(), "KB12345678")
            .with_hybrid_search(true);
    kb.retrieve(&RetrieveRequest::new("gutters", 2))
        .await
        .unwrap();
    let body = server.requests()[0].json();
    assert_eq!(
        body["retrievalConfiguration"]["vectorSearchConfiguration"]["overrideSearchType"],
        "HYBRID"
    );
}

const RERANK_ARN: &str = "arn:aws:bedrock:us-east-1::foundation-model/amazon.rerank-v1:0";

#[tokio::test]
async fn retrieve_with_reranking_asks_for_the_candidates_and_has_bedrock_keep_k() {
    let server = CannedServer::start(vec![retrieve_ok()]);
    let kb = builder(&server.url)
        .knowledge_base_id("KB12345678")
        .kb_reranking(RERANK_ARN, Some(20))
        .build()
        .await
        .knowledge_base()
        .unwrap();
    assert_eq!(kb.reranking(), Some((RERANK_ARN, 20)));
    let request = RetrieveRequest::new("new puppy, lawn getting messy", 3)
        .with_filter(Filter::from_pairs(&["doc_type=past_message"]).unwrap())
        .with_mode(SearchMode::Vector);
    let chunks = kb.retrieve(&request).await.unwrap();
    assert_eq!(chunks.len(), 2);

    let body = server.requests()[0].json();
    let search = &body["retrievalConfiguration"]["vectorSearchConfiguration"];
    // The first stage returns max(k, candidates); the re-ranker keeps k of them.
    assert_eq!(search["numberOfResults"], 20);
    assert_eq!(
        search["rerankingConfiguration"],
        json!({
            "type": "BEDROCK_RERANKING_MODEL",
            "bedrockRerankingConfiguration": {
                "modelConfiguration": {"modelArn": RERANK_ARN},
                "numberOfRerankedResults": 3
            }
        })
    );
    // The filter and the search type are unchanged by re-ranking.
    assert_eq!(search["overrideSearchType"], "SEMANTIC");
    assert!(search["filter"].get("orAll").is_some(), "{search}");

    // k above the candidates: k results, all re-ranked; never more than Retrieve's 100.
    kb.retrieve(&RetrieveRequest::new("gutters", 30))
        .await
        .unwrap();
    let kb_wide = BedrockKnowledgeBase::new(context(&server).await.bedrock_agent().clone(), "KB1")
        .with_reranking(Some((RERANK_ARN.to_owned(), 500)));
    // Bedrock answers with more than k: the adapter still returns k.
    let one = kb_wide
        .retrieve(&RetrieveRequest::new("gutters", 1))
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].doc_id, "past-messages/pm-0042");
    let sent = server.requests();
    assert_eq!(sent.len(), 3);
    let wide = sent[1].json();
    let search = &wide["retrievalConfiguration"]["vectorSearchConfiguration"];
    assert_eq!(search["numberOfResults"], 30);
    assert_eq!(
        search["rerankingConfiguration"]["bedrockRerankingConfiguration"]["numberOfRerankedResults"],
        30
    );
    let capped = sent[2].json();
    let search = &capped["retrievalConfiguration"]["vectorSearchConfiguration"];
    assert_eq!(search["numberOfResults"], 100);
    assert_eq!(
        search["rerankingConfiguration"]["bedrockRerankingConfiguration"]["numberOfRerankedResults"],
        1
    );
}

#[tokio::test]
async fn retrieve_without_reranking_sends_no_reranking_configuration() {
    let server = CannedServer::start(vec![retrieve_ok()]);
    let kb = context(&server).await.knowledge_base().unwrap();
    assert_eq!(kb.reranking(), None);
    // An empty model ARN is off too (the template passes '' when re-ranking is turned off).
    let kb_empty = kb.clone().with_reranking(Some((" ".to_owned(), 20)));
    assert_eq!(kb_empty.reranking(), None);
    for kb in [kb, kb_empty] {
        let chunks = kb
            .retrieve(&RetrieveRequest::new("gutters", 1))
            .await
            .unwrap();
        assert_eq!(chunks.len(), 1);
    }
    for sent in server.requests() {
        let body = sent.json();
        let search = &body["retrievalConfiguration"]["vectorSearchConfiguration"];
        assert!(search.get("rerankingConfiguration").is_none(), "{search}");
        assert_eq!(search["numberOfResults"], 1);
    }
}

#[tokio::test]
async fn reranking_settings_come_from_the_environment() {
    let server = CannedServer::start(vec![retrieve_ok()]);
    let kb_of = |vars: Vec<(&'static str, &'static str)>| {
        let url = server.url.clone();
        async move {
            let mut vars = vars;
            vars.push(("UPSELL_KNOWLEDGE_BASE_ID", "KB12345678"));
            AwsContextBuilder::from_vars(|name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            })
            .unwrap()
            .endpoint_url(url)
            .region("us-east-1")
            .test_credentials()
            .max_attempts(1)
            .build()
            .await
            .knowledge_base()
            .unwrap()
        }
    };
    let kb = kb_of(vec![("UPSELL_KB_RERANK_MODEL_ARN", RERANK_ARN)]).await;
    assert_eq!(
        kb.reranking(),
        Some((RERANK_ARN, RerankSettings::DEFAULT_CANDIDATES))
    );
    let kb = kb_of(vec![
        ("UPSELL_KB_RERANK_MODEL_ARN", RERANK_ARN),
        ("UPSELL_KB_RERANK_CANDIDATES", " 50 "),
    ])
    .await;
    assert_eq!(kb.reranking(), Some((RERANK_ARN, 50)));
    kb.retrieve(&RetrieveRequest::new("gutters", 5))
        .await
        .unwrap();
    let body = server.requests()[0].json();
    assert_eq!(
        body["retrievalConfiguration"]["vectorSearchConfiguration"]["numberOfResults"],
        50
    );
    // Unset or empty ARN: off, whatever the candidates say.
    assert_eq!(kb_of(vec![]).await.reranking(), None);
    let off = kb_of(vec![
        ("UPSELL_KB_RERANK_MODEL_ARN", ""),
        ("UPSELL_KB_RERANK_CANDIDATES", "30"),
    ])
    .await;
    assert_eq!(off.reranking(), None);

    for bad in ["twenty", "0", "101", "-5"] {
        let err = AwsContextBuilder::from_vars(|name| {
            (name == "UPSELL_KB_RERANK_CANDIDATES").then(|| bad.to_owned())
        })
        .unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidEnv { name, .. } if *name == "UPSELL_KB_RERANK_CANDIDATES"),
            "{bad}: {err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("UPSELL_KB_RERANK_CANDIDATES"), "{text}");
        assert!(text.contains(bad), "{text}");
    }
}

#[tokio::test]
async fn retrieve_errors_map_to_port_errors() {
    let cases = [
        (
            Canned::aws_error(429, "ThrottlingException", "slow down"),
            "Throttled",
        ),
        (
            Canned::aws_error(404, "ResourceNotFoundException", "no such KB"),
            "NotFound",
        ),
        (
            Canned::aws_error(400, "ValidationException", "bad filter"),
            "InvalidRequest",
        ),
        (
            Canned::aws_error(500, "InternalServerException", "boom"),
            "TransientError",
        ),
        (
            Canned::aws_error(424, "DependencyFailedException", "vector store down"),
            "TransientError",
        ),
        (Canned::json(200, "not json at all"), "TransientError"),
    ];
    for (canned, want) in cases {
        let server = CannedServer::start(vec![canned.clone()]);
        let kb = context(&server).await.knowledge_base().unwrap();
        let err = kb
            .retrieve(&RetrieveRequest::new("gutters", 2))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), want, "{canned:?} -> {err:?}");
    }
}

#[tokio::test]
async fn retrieve_refuses_what_bedrock_cannot_do_without_calling() {
    let server = CannedServer::start(vec![retrieve_ok()]);
    let kb = context(&server).await.knowledge_base().unwrap();
    let keyword = RetrieveRequest::new("gutters", 2).with_mode(SearchMode::Keyword);
    assert!(matches!(
        kb.retrieve(&keyword).await,
        Err(PortError::Invalid(_))
    ));
    assert!(matches!(
        kb.retrieve(&RetrieveRequest::new("gutters", 0)).await,
        Err(PortError::Invalid(_))
    ));
    assert!(matches!(
        kb.retrieve(&RetrieveRequest::new("  ", 3)).await,
        Err(PortError::Invalid(_))
    ));
    let no_options = RetrieveRequest::new("x", 3).with_filter(Some(Filter::OrAll(vec![])));
    assert!(matches!(
        kb.retrieve(&no_options).await,
        Err(PortError::Invalid(_))
    ));
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn knowledge_base_needs_its_id() {
    let server = CannedServer::start(vec![retrieve_ok()]);
    let ctx = builder(&server.url).build().await;
    let err = ctx.knowledge_base().unwrap_err();
    assert!(
        err.to_string().contains("UPSELL_KNOWLEDGE_BASE_ID"),
        "{err}"
    );
}

// ------------------------------------------------------------------------------------------
// Titan Text Embeddings v2.

fn titan_ok(values: &[f32]) -> Canned {
    Canned::json(
        200,
        json!({"embedding": values, "inputTextTokenCount": 4}).to_string(),
    )
}

#[tokio::test]
async fn titan_sends_one_request_per_text_and_returns_unit_vectors() {
    let mut v = vec![0.0f32; 256];
    v[0] = 3.0;
    v[1] = 4.0;
    let server = CannedServer::start(vec![titan_ok(&v)]);
    let embedder: TitanEmbedder = context(&server).await.embedder();
    assert_eq!(embedder.info().provider, "titan");
    assert_eq!(embedder.info().dimensions, 256);
    let texts = vec!["gutter cleaning".to_owned(), "pool opening".to_owned()];
    let vectors = embedder.embed(&texts).await.unwrap();
    assert_eq!(vectors.len(), 2);
    assert!((vectors[0][0] - 0.6).abs() < 1e-6 && (vectors[0][1] - 0.8).abs() < 1e-6);

    let sent = server.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].path, "/model/amazon.titan-embed-text-v2%3A0/invoke");
    assert_eq!(
        sent[1].json(),
        json!({"inputText": "pool opening", "dimensions": 256, "normalize": true})
    );
}

#[tokio::test]
async fn titan_failures_are_typed() {
    let cases = [
        (
            Canned::aws_error(429, "ThrottlingException", "slow down"),
            "Throttled",
        ),
        (
            Canned::aws_error(400, "ValidationException", "too long"),
            "InvalidRequest",
        ),
        (
            Canned::json(200, "{\"embedding\": \"nope\"}"),
            "InternalError",
        ),
        (titan_ok(&[0.5, 0.5]), "InternalError"),
        (titan_ok(&[0.0; 256]), "InternalError"),
    ];
    for (canned, want) in cases {
        let server = CannedServer::start(vec![canned.clone()]);
        let embedder = context(&server).await.embedder();
        let err = embedder.embed(&["hello".to_owned()]).await.unwrap_err();
        assert_eq!(err.error_type(), want, "{canned:?} -> {err:?}");
    }
}

#[tokio::test]
async fn titan_refuses_empty_text_and_bad_dimensions_without_calling() {
    let server = CannedServer::start(vec![titan_ok(&[1.0; 256])]);
    let ctx = context(&server).await;
    let err = ctx.embedder().embed(&[" ".to_owned()]).await.unwrap_err();
    assert!(matches!(err, PortError::Invalid(_)), "{err:?}");
    let odd = TitanEmbedder::new(ctx.bedrock().clone(), "amazon.titan-embed-text-v2:0", 300);
    assert!(matches!(
        odd.embed(&["x".to_owned()]).await,
        Err(PortError::Invalid(_))
    ));
    assert!(server.requests().is_empty());
}
