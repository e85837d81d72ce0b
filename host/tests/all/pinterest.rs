//! pinterest adapter through wasmtime and pulls against a fake of its API (to be written).
