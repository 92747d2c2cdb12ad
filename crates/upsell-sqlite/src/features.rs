//! Feature store adapter (in progress).
