//! The S3 Vectors customer index over HTTP: `upsert` and the newer-wins rule against moto
//! server's S3 Vectors (`UPSELL_MOTO_ENDPOINT`; skipped, saying so, when unset), and `similar`
//! against canned responses (moto has no `QueryVectors`): what it sends (index, `topK`, the
//! metadata filter) and what it makes of the answers. The cases follow the local index's tests
//! (crates/upsell-sqlite/tests/features.rs).

mod common;

use chrono::{DateTime, Duration, Utc};
use common::{Canned, CannedServer, builder, moto_endpoint, unique};
use serde_json::{Value, json};
use upsell_aws::S3VectorsCustomerIndex;
use upsell_aws::sdk::s3vectors::types::{DataType, DistanceMetric, MetadataConfiguration};
use upsell_core::events::{Region, Service};
use upsell_core::features::{
    CustomerEmbedding, CustomerIndex, EMBEDDING_VERSION, SimilarCustomer, SimilarQuery,
    embedding_dimensions, embedding_len,
};
use upsell_core::ports::PortError;

const BUCKET: &str = "upsell-flow-dev-customers-123456789012";
const INDEX: &str = "cust-emb-v1";

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn dim(name: &str) -> usize {
    embedding_dimensions()
        .iter()
        .position(|d| d == name)
        .unwrap_or_else(|| panic!("no dimension {name}"))
}

/// An embedding with the one-hot dimensions set from `region` and `services`, `shift` added
/// to the numeric ones.
fn embedding(
    customer: &str,
    as_of: &str,
    region: Region,
    services: &[Service],
    shift: f32,
) -> CustomerEmbedding {
    let mut vector = vec![0.0; embedding_len()];
    for (i, x) in vector.iter_mut().enumerate().take(10) {
        *x = 0.1 * i as f32 + shift;
    }
    let code = serde_json::to_value(region).unwrap();
    vector[dim(&format!("region:{}", code.as_str().unwrap()))] = 1.0;
    for s in services {
        vector[dim(&format!("bought:{}", s.code()))] = 0.5;
    }
    CustomerEmbedding {
        customer_id: customer.into(),
        embedding_version: EMBEDDING_VERSION.into(),
        as_of: t(as_of),
        region: Some(region),
        services_bought: services.to_vec(),
        vector,
    }
}

fn c1() -> CustomerEmbedding {
    embedding(
        "c1",
        "2024-07-01T00:00:00Z",
        Region::Midwest,
        &[Service::LawnCare, Service::PoolService],
        0.0,
    )
}

fn others() -> Vec<CustomerEmbedding> {
    vec![
        embedding(
            "twin",
            "2024-07-01T00:00:00Z",
            Region::Midwest,
            &[Service::LawnCare, Service::PoolService],
            0.0,
        ),
        embedding(
            "south",
            "2024-06-01T00:00:00Z",
            Region::Southwest,
            &[Service::LawnCare, Service::PoolService],
            0.1,
        ),
        embedding(
            "far",
            "2016-01-02T00:00:00Z",
            Region::Northeast,
            &[Service::SnowRemoval],
            2.0,
        ),
    ]
}

/// A `GetVectors` item as S3 Vectors returns it (data and metadata asked for).
fn stored(e: &CustomerEmbedding) -> Value {
    let mut metadata = json!({
        "services": e.services_bought,
        "embeddingVersion": e.embedding_version,
        "asOf": e.as_of.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    });
    if let Some(r) = e.region {
        metadata["region"] = json!(r);
    }
    json!({"key": e.customer_id, "data": {"float32": e.vector}, "metadata": metadata})
}

fn get_vectors(items: &[&CustomerEmbedding]) -> Canned {
    let vectors: Vec<Value> = items.iter().map(|e| stored(e)).collect();
    Canned::json(200, json!({ "vectors": vectors }).to_string())
}

fn query_vectors(hits: &[(&str, f32)]) -> Canned {
    let vectors: Vec<Value> = hits
        .iter()
        .map(|(k, d)| json!({"key": k, "distance": d}))
        .collect();
    Canned::json(
        200,
        json!({"vectors": vectors, "distanceMetric": "euclidean"}).to_string(),
    )
}

async fn canned_index(server: &CannedServer) -> S3VectorsCustomerIndex {
    builder(&server.url)
        .customer_vector_index(BUCKET, INDEX)
        .build()
        .await
        .customer_index()
        .unwrap()
}

fn query(k: usize, region: Option<Region>, service: Option<Service>) -> SimilarQuery {
    SimilarQuery {
        customer_id: "c1".into(),
        k,
        region,
        service,
    }
}

#[tokio::test]
async fn similar_queries_k_plus_one_excludes_the_customer_and_ranks_with_the_core_rules() {
    let me = c1();
    let o = others();
    // QueryVectors finds the customer itself first; the candidates' vectors come back in
    // another order than the hits.
    let server = CannedServer::start(vec![
        get_vectors(&[&me]),
        query_vectors(&[("c1", 0.0), ("twin", 0.0), ("south", 1.0), ("far", 5.0)]),
        get_vectors(&[&o[2], &o[0], &o[1]]),
    ]);
    let hits = canned_index(&server)
        .await
        .similar(&query(10, None, None))
        .await
        .unwrap();
    let ids: Vec<&str> = hits.iter().map(|h| h.customer_id.as_str()).collect();
    assert_eq!(
        ids,
        ["twin", "south", "far"],
        "the query customer itself is excluded"
    );
    // Distances and agreeing dimensions are the core's, as in the local index.
    for (hit, other) in hits.iter().zip([&o[0], &o[1], &o[2]]) {
        let expected = SimilarCustomer::of(
            &me.vector,
            other.customer_id.clone(),
            other.region,
            other.services_bought.clone(),
            &other.vector,
        );
        assert_eq!(hit, &expected);
    }
    assert!(hits[0].distance < 1e-6);
    assert!(
        hits[1]
            .closest_features
            .iter()
            .any(|(n, _)| n == "bought:pool-service")
    );
    assert!(
        !hits[1]
            .closest_features
            .iter()
            .any(|(n, _)| n.starts_with("region:"))
    );

    let sent = server.requests();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[0].path, "/GetVectors");
    let first = sent[0].json();
    assert_eq!(first["vectorBucketName"], BUCKET);
    assert_eq!(first["indexName"], INDEX);
    assert_eq!(first["keys"], json!(["c1"]));
    assert_eq!(first["returnData"], true);
    assert_eq!(sent[1].path, "/QueryVectors");
    let q = sent[1].json();
    assert_eq!(q["vectorBucketName"], BUCKET);
    assert_eq!(q["indexName"], INDEX);
    assert_eq!(q["topK"], 11, "k + 1: the customer finds itself");
    assert_eq!(q["queryVector"], json!({ "float32": me.vector }));
    assert!(q.get("filter").is_none(), "no filter without filters: {q}");
    assert_eq!(sent[2].path, "/GetVectors");
    let third = sent[2].json();
    assert_eq!(third["keys"], json!(["twin", "south", "far"]));
    assert_eq!(third["returnData"], true);
    assert_eq!(third["returnMetadata"], true);
}

#[tokio::test]
async fn similar_sends_the_region_and_service_filters_as_metadata_filters() {
    let me = c1();
    let o = others();
    let cases = [
        (
            Some(Region::Southwest),
            None,
            json!({"region": {"$eq": "southwest"}}),
        ),
        (
            None,
            Some(Service::SnowRemoval),
            json!({"services": {"$eq": "snow-removal"}}),
        ),
        (
            Some(Region::Southwest),
            Some(Service::PoolService),
            json!({"$and": [{"region": {"$eq": "southwest"}}, {"services": {"$eq": "pool-service"}}]}),
        ),
    ];
    for (region, service, filter) in cases {
        // The filter keeps the customer itself out: all k + 1 hits are candidates, k are kept.
        let server = CannedServer::start(vec![
            get_vectors(&[&me]),
            query_vectors(&[("south", 1.0), ("twin", 2.0)]),
            get_vectors(&[&o[1]]),
        ]);
        let hits = canned_index(&server)
            .await
            .similar(&query(1, region, service))
            .await
            .unwrap();
        let sent = server.requests();
        let q = sent[1].json();
        assert_eq!(q["filter"], filter, "{region:?} {service:?}");
        assert_eq!(q["topK"], 2);
        assert_eq!(sent[2].json()["keys"], json!(["south"]), "k = 1 kept");
        let ids: Vec<&str> = hits.iter().map(|h| h.customer_id.as_str()).collect();
        // What the store returns is checked against the filters again (core rule): the service
        // filter for snow removal does not admit `south`.
        let expected: &[&str] = if service == Some(Service::SnowRemoval) {
            &[]
        } else {
            &["south"]
        };
        assert_eq!(ids, expected, "{region:?} {service:?}");
    }
}

#[tokio::test]
async fn similar_without_matches_is_empty() {
    let me = c1();
    let server = CannedServer::start(vec![get_vectors(&[&me]), query_vectors(&[("c1", 0.0)])]);
    let hits = canned_index(&server)
        .await
        .similar(&query(3, Some(Region::West), None))
        .await
        .unwrap();
    assert!(hits.is_empty());
    // No candidates: no second GetVectors.
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn similar_of_a_customer_without_embedding_is_not_found() {
    let server = CannedServer::start(vec![Canned::json(200, r#"{"vectors": []}"#)]);
    let err = canned_index(&server)
        .await
        .similar(&query(3, None, None))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "NotFound", "{err}");
    assert!(err.to_string().contains("c1"), "{err}");
    assert_eq!(
        server.requests().len(),
        1,
        "no query without the customer's vector"
    );
}

#[tokio::test]
async fn similar_refuses_k_the_store_cannot_answer_without_calling() {
    let server = CannedServer::start(vec![Canned::json(200, r#"{"vectors": []}"#)]);
    let index = canned_index(&server).await;
    for k in [0, upsell_aws::customer_index::MAX_K + 1] {
        let err = index.similar(&query(k, None, None)).await.unwrap_err();
        assert_eq!(err.error_type(), "InvalidRequest", "k = {k}: {err}");
    }
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn query_errors_map_to_the_stable_names() {
    let me = c1();
    for (canned, name) in [
        (
            Canned::aws_error(429, "TooManyRequestsException", "slow down"),
            "Throttled",
        ),
        (
            Canned::aws_error(503, "ServiceUnavailableException", "later"),
            "TransientError",
        ),
        (
            Canned::aws_error(400, "ValidationException", "bad filter"),
            "InvalidRequest",
        ),
    ] {
        let server = CannedServer::start(vec![get_vectors(&[&me]), canned]);
        let err = canned_index(&server)
            .await
            .similar(&query(3, None, None))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), name, "{err}");
    }
}

#[tokio::test]
async fn a_stored_vector_without_readable_metadata_is_an_error_in_results() {
    let me = c1();
    let server = CannedServer::start(vec![
        get_vectors(&[&me]),
        query_vectors(&[("twin", 0.0)]),
        Canned::json(
            200,
            json!({"vectors": [{"key": "twin", "data": {"float32": me.vector}, "metadata": {"region": "atlantis"}}]})
                .to_string(),
        ),
    ]);
    let err = canned_index(&server)
        .await
        .similar(&query(3, None, None))
        .await
        .unwrap_err();
    assert!(matches!(err, PortError::Other(_)), "{err}");
    assert!(err.to_string().contains("twin"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// upsert against moto's S3 Vectors.

async fn moto_index(endpoint: &str) -> S3VectorsCustomerIndex {
    let bucket = unique("customers");
    let ctx = builder(endpoint)
        .customer_vector_index(&bucket, INDEX)
        .build()
        .await;
    let client = ctx.s3vectors();
    client
        .create_vector_bucket()
        .vector_bucket_name(&bucket)
        .send()
        .await
        .unwrap();
    // As the template's CustomerVectorIndex.
    client
        .create_index()
        .vector_bucket_name(&bucket)
        .index_name(INDEX)
        .data_type(DataType::Float32)
        .dimension(embedding_len() as i32)
        .distance_metric(DistanceMetric::Euclidean)
        .metadata_configuration(
            MetadataConfiguration::builder()
                .non_filterable_metadata_keys("asOf")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    ctx.customer_index().unwrap()
}

/// The stored vector of `key`, as JSON (data and metadata), read with the SDK.
async fn read_back(endpoint: &str, index: &S3VectorsCustomerIndex, key: &str) -> Option<Value> {
    let ctx = builder(endpoint).build().await;
    let out = ctx
        .s3vectors()
        .get_vectors()
        .vector_bucket_name(index.bucket())
        .index_name(index.index())
        .keys(key)
        .return_data(true)
        .return_metadata(true)
        .send()
        .await
        .unwrap();
    out.vectors().first().map(|v| {
        let data = v.data().unwrap().as_float32().unwrap().clone();
        let meta = match v.metadata() {
            Some(d) => document_json(d),
            None => Value::Null,
        };
        json!({"data": data, "metadata": meta})
    })
}

fn document_json(d: &aws_smithy_types::Document) -> Value {
    use aws_smithy_types::Document as D;
    match d {
        D::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), document_json(v)))
                .collect(),
        ),
        D::Array(a) => Value::Array(a.iter().map(document_json).collect()),
        D::String(s) => json!(s),
        D::Bool(b) => json!(b),
        D::Number(n) => json!(n.to_f64_lossy()),
        D::Null => Value::Null,
    }
}

#[tokio::test]
async fn upsert_writes_the_vector_with_its_metadata() {
    let Some(endpoint) = moto_endpoint("upsert_writes_the_vector_with_its_metadata") else {
        return;
    };
    let index = moto_index(&endpoint).await;
    let e = c1();
    index.upsert(&e).await.unwrap();
    let got = read_back(&endpoint, &index, "c1").await.expect("c1 stored");
    assert_eq!(got["data"], json!(e.vector));
    assert_eq!(
        got["metadata"],
        json!({
            "region": "midwest",
            "services": ["lawn-care", "pool-service"],
            "embeddingVersion": EMBEDDING_VERSION,
            "asOf": "2024-07-01T00:00:00.000000Z",
        })
    );
    // A customer without a known region has no `region` key (no filter can match it).
    let mut no_region = others().remove(0);
    no_region.region = None;
    index.upsert(&no_region).await.unwrap();
    let got = read_back(&endpoint, &index, "twin").await.unwrap();
    assert!(got["metadata"].get("region").is_none(), "{got}");
}

#[tokio::test]
async fn an_older_embedding_never_replaces_a_newer_one() {
    let Some(endpoint) = moto_endpoint("an_older_embedding_never_replaces_a_newer_one") else {
        return;
    };
    let index = moto_index(&endpoint).await;
    let newest = c1();
    index.upsert(&newest).await.unwrap();
    let mut older = embedding(
        "c1",
        "2024-04-01T15:00:00Z",
        Region::Midwest,
        &[Service::LawnCare],
        0.3,
    );
    index.upsert(&older).await.unwrap();
    let got = read_back(&endpoint, &index, "c1").await.unwrap();
    assert_eq!(
        got["data"],
        json!(newest.vector),
        "the older embedding was written"
    );
    assert_eq!(
        got["metadata"]["services"],
        json!(["lawn-care", "pool-service"])
    );

    // The same time again replaces (a re-run of the same event); a newer one replaces.
    let mut same_time = newest.clone();
    same_time.vector[0] += 0.5;
    index.upsert(&same_time).await.unwrap();
    let got = read_back(&endpoint, &index, "c1").await.unwrap();
    assert_eq!(got["data"], json!(same_time.vector));
    let mut newer = newest.clone();
    newer.as_of = newest.as_of + Duration::days(1);
    newer.vector[1] += 0.25;
    index.upsert(&newer).await.unwrap();
    assert_eq!(
        read_back(&endpoint, &index, "c1").await.unwrap()["data"],
        json!(newer.vector)
    );

    // Another embedding version always replaces (a re-embedding with new definitions).
    older.embedding_version = "cust-emb-v0".into();
    index.upsert(&older).await.unwrap();
    let got = read_back(&endpoint, &index, "c1").await.unwrap();
    assert_eq!(got["metadata"]["embeddingVersion"], "cust-emb-v0");
}

#[tokio::test]
async fn upsert_refuses_a_malformed_embedding_and_reports_a_missing_index() {
    let Some(endpoint) =
        moto_endpoint("upsert_refuses_a_malformed_embedding_and_reports_a_missing_index")
    else {
        return;
    };
    let index = moto_index(&endpoint).await;
    let mut short = c1();
    short.vector.pop();
    let err = index.upsert(&short).await.unwrap_err();
    assert_eq!(err.error_type(), "InvalidRequest", "{err}");
    let mut nan = c1();
    nan.vector[3] = f32::NAN;
    assert_eq!(
        index.upsert(&nan).await.unwrap_err().error_type(),
        "InvalidRequest"
    );
    assert!(read_back(&endpoint, &index, "c1").await.is_none());

    let missing = builder(&endpoint)
        .customer_vector_index(index.bucket(), "no-such-index")
        .build()
        .await
        .customer_index()
        .unwrap();
    let err = missing.upsert(&c1()).await.unwrap_err();
    assert_eq!(err.error_type(), "NotFound", "{err}");
}

#[tokio::test]
async fn similar_of_an_unknown_customer_is_not_found_on_moto() {
    let Some(endpoint) = moto_endpoint("similar_of_an_unknown_customer_is_not_found_on_moto")
    else {
        return;
    };
    let index = moto_index(&endpoint).await;
    index.upsert(&c1()).await.unwrap();
    let err = index
        .similar(&SimilarQuery {
            customer_id: "ghost".into(),
            k: 3,
            region: None,
            service: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "NotFound", "{err}");
}
