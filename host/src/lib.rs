//! adpipe: ingest ad-performance data through sandboxed WASM adapters,
//! aggregate it exactly once, serve insights over REST.
//!
//! Data path, folder by folder: a request arrives at [`api`]; webhooks are
//! verified and every payload is adapted by a [`plugin`] and normalized into
//! rows ([`pipeline`]); rows become durable on the [`bus`]; the consumer
//! ([`pipeline::consume`]) applies them exactly once to the [`store`];
//! [`insights`] are computed from the store and served by [`api`].
//! [`config`] is parsed once into typed values; [`app`] wires the parts.

pub mod allocator;
pub mod api;
pub mod app;
pub mod auth;
pub mod bus;
pub mod config;
pub mod group_commit;
pub mod insights;
pub mod metadata;
pub mod pipeline;
pub mod plugin;
pub mod ratelimit;
pub mod row;
pub mod seal;
pub mod sqlite;
pub mod store;
pub mod telemetry;
pub mod tls;
