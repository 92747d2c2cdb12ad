//! The committed JSON Schemas of this worker's input and output (schemas/workers/rollout/) match
//! the Rust types.

use upsell_core::schema::schema_of;
use upsell_models::testing::check_schema_file;

#[test]
fn committed_schemas_are_up_to_date() {
    check_schema_file(
        "workers/rollout/input.schema.json",
        &schema_of::<rollout::Input>(),
    )
    .unwrap();
    check_schema_file(
        "workers/rollout/output.schema.json",
        &schema_of::<rollout::Output>(),
    )
    .unwrap();
}
