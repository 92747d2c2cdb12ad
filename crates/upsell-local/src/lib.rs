//! The local runtime: reads the SAM template, matches events to rules and runs the state machines
//! with the ASL engine, calling each worker in-process.
//!
//! [`runtime::Runtime`] ties it together; [`template`] reads `sam/template.yaml`, [`pattern`]
//! matches EventBridge patterns, [`dynamodb`] provides the DynamoDB getItem and putItem task
//! integrations the state machines use, [`services`] the EventBridge and Step Functions
//! (`states:startExecution`) ones, [`item_reader`] S3 buckets as local folders for Distributed
//! Map `ItemReader`s and `ResultWriter`s.

pub mod dynamodb;
pub mod item_reader;
pub mod pattern;
pub mod runtime;
pub mod services;
pub mod template;
pub mod workers;
