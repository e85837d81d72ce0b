//! Host integration tests, one binary (link once): the sandbox, the store's
//! exactly-once semantics, the HTTP API, every adapter through wasmtime,
//! scheduled pulls against fake platform APIs, the README quickstart,
//! and crash-restart of a real `adpipe serve` process.

mod adapters;
mod aggregation;
mod api;
mod at_rest;
mod common;
mod consumers;
mod dashboard;
mod distributed;
mod engines;
mod hardening;
mod lifecycle;
mod metrics;
mod microsoft;
mod parity;
mod pinterest;
mod platforms;
mod readme;
mod restart;
mod rollout;
mod rollups;
mod sandbox;
mod serving;
mod tenancy;
mod traces;
mod traffic;
mod tutorial;
