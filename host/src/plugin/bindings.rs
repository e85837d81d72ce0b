//! The one place the WIT package `adpipe:plugin@0.1.0` (`wit/`) becomes Rust:
//! host-side bindings of the adapter and metric worlds.

/// Bindings of the `adapter-plugin` world.
pub mod adapter {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "adapter-plugin",
    });
}

/// Bindings of the `metric-plugin` world (types and log shared with the adapter world).
pub mod metric {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "metric-plugin",
        with: {
            "adpipe:plugin/types": super::adapter::adpipe::plugin::types,
            "adpipe:plugin/log": super::adapter::adpipe::plugin::log,
        },
    });
}
