//! The committed JSON Schemas of this worker's input and output (schemas/workers/enrich/) match
//! the Rust types.

use upsell_core::schema::schema_of;
use upsell_models::testing::check_schema_file;

#[test]
fn committed_schemas_are_up_to_date() {
    check_schema_file(
        "workers/enrich/input.schema.json",
        &schema_of::<enrich::Input>(),
    )
    .unwrap();
    check_schema_file(
        "workers/enrich/output.schema.json",
        &schema_of::<enrich::Output>(),
    )
    .unwrap();
}
