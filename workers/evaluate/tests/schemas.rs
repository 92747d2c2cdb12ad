//! The committed JSON Schemas of this worker's input and output (schemas/workers/evaluate/)
//! match the Rust types.

use upsell_core::schema::schema_of;
use upsell_models::testing::check_schema_file;

#[test]
fn committed_schemas_are_up_to_date() {
    check_schema_file(
        "workers/evaluate/input.schema.json",
        &schema_of::<evaluate::Input>(),
    )
    .unwrap();
    check_schema_file(
        "workers/evaluate/output.schema.json",
        &schema_of::<evaluate::Output>(),
    )
    .unwrap();
}
