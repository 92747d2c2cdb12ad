//! The local runtime: reads the SAM template, matches events to rules and runs the state machines
//! with the ASL engine, calling each worker in-process.

pub mod expr;
pub mod pattern;
pub mod runtime;
pub mod services;
pub mod template;
