//! The data path between a request and the store: verify a webhook's
//! signature ([`signature`]), run the adapter and normalize its rows
//! ([`normalize`], [`process`]), bind webhook deliveries to the accounts
//! their pipeline lists ([`accounts`]), fetch reports on a schedule
//! ([`pull`]), and apply bus records to the store ([`consume`]).

pub mod accounts;
pub mod consume;
pub mod normalize;
pub mod process;
pub mod pull;
pub mod signature;
