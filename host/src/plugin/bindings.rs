//! The one place the WIT package `adpipe:plugin` (`wit/<version>/`) becomes
//! Rust: host-side bindings of the adapter and metric worlds, one module per
//! interface version the host loads. The host works in the current version's
//! types ([`v0_2`]); [`super::compat`] converts what older components return.

/// `adpipe:plugin@0.2.0`, the current interface.
pub mod v0_2 {
    /// Bindings of the `adapter-plugin` world.
    pub mod adapter {
        wasmtime::component::bindgen!({
            path: "../wit/0.2.0",
            world: "adapter-plugin",
        });
    }

    /// Bindings of the `metric-plugin` world (types and log shared with the adapter world).
    pub mod metric {
        wasmtime::component::bindgen!({
            path: "../wit/0.2.0",
            world: "metric-plugin",
            with: {
                "adpipe:plugin/types": super::adapter::adpipe::plugin::types,
                "adpipe:plugin/log": super::adapter::adpipe::plugin::log,
            },
        });
    }
}

/// `adpipe:plugin@0.1.0`, frozen: loaded through [`super::compat`].
pub mod v0_1 {
    /// Bindings of the `adapter-plugin` world.
    pub mod adapter {
        wasmtime::component::bindgen!({
            path: "../wit/0.1.0",
            world: "adapter-plugin",
        });
    }

    /// Bindings of the `metric-plugin` world.
    pub mod metric {
        wasmtime::component::bindgen!({
            path: "../wit/0.1.0",
            world: "metric-plugin",
            with: {
                "adpipe:plugin/types": super::adapter::adpipe::plugin::types,
                "adpipe:plugin/log": super::adapter::adpipe::plugin::log,
            },
        });
    }
}

/// The current interface's adapter bindings (the host's working types).
pub use v0_2::adapter;
/// The current interface's metric bindings.
pub use v0_2::metric;
