//! adpipe: ingest ad-performance data through sandboxed WASM adapters,
//! aggregate it exactly once, serve insights over REST.
//!
//! Data path: receive → verify ([`signature`]) → adapt ([`plugin`]) →
//! durable bus ([`bus`]) → aggregate ([`store`]) → serve ([`api`]).

pub mod aggregate;
pub mod api;
pub mod apikeys;
pub mod app;
pub mod apply;
pub mod auth;
pub mod authoring;
pub mod bus;
pub mod cache;
pub mod clickhouse_store;
pub mod config;
pub mod ingest;
pub mod kafka;
pub mod metadata;
pub mod plugin;
pub mod process;
pub mod pull;
pub mod ratelimit;
pub mod row;
pub mod signature;
pub mod sqlite;
pub mod store;
pub mod telemetry;
pub mod tls;
