//! The committed JSON Schemas of this worker's input and output (schemas/workers/judge/) match
//! the Rust types.

use upsell_core::schema::schema_of;
use upsell_models::testing::check_schema_file;

#[test]
fn committed_schemas_are_up_to_date() {
    check_schema_file(
        "workers/judge/input.schema.json",
        &schema_of::<judge::Input>(),
    )
    .unwrap();
    check_schema_file(
        "workers/judge/output.schema.json",
        &schema_of::<judge::Output>(),
    )
    .unwrap();
}
