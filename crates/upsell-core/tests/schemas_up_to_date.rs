//! The committed schemas in `schemas/` must match the ones generated from the Rust types.

use std::path::{Path, PathBuf};

use upsell_core::schema::{REGENERATE_COMMAND, all_schemas, stale_schemas};

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

fn stale_in(dir: &Path) -> Vec<String> {
    stale_schemas(|rel| std::fs::read_to_string(dir.join(rel)).ok())
}

#[test]
fn committed_schemas_are_up_to_date() {
    let stale = stale_in(&schema_dir());
    assert!(
        stale.is_empty(),
        "these schemas in schemas/ are missing or stale: {}\nregenerate them with `{REGENERATE_COMMAND}` \
         (from the repository root) and commit the result",
        stale.join(", ")
    );
}

#[test]
fn every_schema_compiles_as_draft_2020_12() {
    for (rel, schema) in all_schemas() {
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{rel}"
        );
        jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{rel}: {e}"));
    }
}

#[test]
fn stale_detection_notices_a_changed_file() {
    let dir = std::env::temp_dir().join(format!("upsell-schemas-{}", std::process::id()));
    for (rel, schema) in all_schemas() {
        let p = dir.join(&rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, upsell_core::schema::render(&schema)).unwrap();
    }
    assert!(stale_in(&dir).is_empty());
    std::fs::write(dir.join("agent-spec.schema.json"), "{}\n").unwrap();
    std::fs::remove_file(dir.join("events/SurveySubmitted.schema.json")).unwrap();
    let mut stale = stale_in(&dir);
    stale.sort();
    assert_eq!(
        stale,
        [
            "agent-spec.schema.json",
            "events/SurveySubmitted.schema.json"
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
