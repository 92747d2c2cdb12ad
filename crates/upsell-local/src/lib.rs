//! The local runtime: reads the SAM template, matches events to rules and runs the state machines
//! with the ASL engine, calling each worker in-process.
//!
//! [`runtime::Runtime`] ties it together; [`template`] reads `sam/template.yaml`, [`pattern`]
//! matches EventBridge patterns, [`services`] provides the DynamoDB and EventBridge task
//! integrations, [`expr`] the DynamoDB expression language they use.

pub mod expr;
pub mod pattern;
pub mod runtime;
pub mod services;
pub mod template;
