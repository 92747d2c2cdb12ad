//! The committed JSON Schemas of this worker's input and output (schemas/workers/drift-monitor/)
//! match the Rust types.

use upsell_core::schema::schema_of;
use upsell_models::testing::check_schema_file;

#[test]
fn committed_schemas_are_up_to_date() {
    check_schema_file(
        "workers/drift-monitor/input.schema.json",
        &schema_of::<drift_monitor::Input>(),
    )
    .unwrap();
    check_schema_file(
        "workers/drift-monitor/output.schema.json",
        &schema_of::<drift_monitor::Output>(),
    )
    .unwrap();
}
