//! Amazon States Language interpreter: parses, validates and runs Step Functions state machines.
