//! The one place the WIT package `adpipe:plugin@0.1.0` (`wit/`) becomes Rust:
//! host-side bindings of the adapter and metric worlds.

/// Bindings of the `adapter-plugin` world.
pub mod adapter {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "adapter-plugin",
    });
}
