//! An example Module Proxy backend: an in-memory todo list with `add`, `list` and `done`.
//!
//! The rules live in [`todos`] (no I/O, unit-tested); [`methods`] turns them into a
//! [`modproxy_sdk::Router`]; `main.rs` only picks the address, sets up logging and serves.

#![warn(missing_docs)]

pub mod methods;
pub mod todos;

pub use methods::{router, router_over};
