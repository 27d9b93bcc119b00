//! Hub v2: per-user fan-out of room events, presence per user, typing per
//! open room. Not wired yet (step S9 serves it at `/ws?v=2`).
//!
//! # Layout
//! - [`conn`]: [`Out`], what a connection's writer is handed, and the
//!   writer's replay [`Dedupe`].

pub mod conn;

pub use conn::{Dedupe, Out};
