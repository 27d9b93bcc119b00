//! The chat service: one function per user operation, called alike by the
//! WebSocket dispatcher, the server functions and the no-JS forms; each one
//! asks [`policy`] first, and policy alone decides rights.
//!
//! # Layout
//! - [`policy`]: who may do what in which room, as pure functions over facts
//!   the caller looked up (no I/O). The committed table
//!   `server/tests/fixtures/authz.csv` states the same rules cell by cell.

pub mod policy;
