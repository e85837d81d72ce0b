//! Host integration tests, one binary (link once): the sandbox, the store's
//! exactly-once semantics, the HTTP API, the Meta adapter through wasmtime,
//! and crash-restart of a real `adpipe serve` process.

mod aggregation;
mod api;
mod common;
mod meta;
mod platforms;
mod readme;
mod restart;
mod sandbox;
