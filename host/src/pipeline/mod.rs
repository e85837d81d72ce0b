//! The data path between a request and the store: verify a webhook's
//! signature ([`signature`]), run the adapter and normalize its rows
//! ([`normalize`], [`process`]), fetch reports on a schedule ([`pull`]), and
//! apply bus records to the store ([`consume`]).

pub mod consume;
pub mod normalize;
pub mod process;
pub mod pull;
pub mod signature;
