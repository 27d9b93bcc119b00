//! Load generator for the side-by-side chat benchmarks (`make bench`).
//!
//! # Layout
//! - [`wire`]: client-side WebSocket framing: upgrade, in-place parsing of
//!   server frames, masked client frames.
//! - [`sio`]: Engine.IO v4 / Socket.IO v5 packets over that WebSocket.
//! - [`stamp`]: the 64-byte body (sender, sequence number, send time).
//! - [`track`]: loss and duplicate detection, latency histograms.
//! - [`adapter`]: what differs per server (path, join, send frame).
//! - [`engine`]: the clients, the fixed send schedule and the accounting.
//! - [`http`]: guest sign-in and room creation for the project.
//! - [`prepare`]: sessions and rooms the project's clients need.
//! - [`procfs`]: CPU seconds and RSS of a process.
//! - [`report`]: the side-by-side markdown table.

pub mod adapter;
pub mod engine;
pub mod http;
pub mod prepare;
pub mod procfs;
pub mod report;
pub mod sio;
pub mod stamp;
pub mod track;
pub mod wire;
