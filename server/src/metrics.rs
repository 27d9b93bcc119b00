//! Counters for `/metrics`, in the Prometheus text format. Plain atomics:
//! updating one is a single relaxed add, cheap enough for the hot path.

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    pub messages_committed: AtomicU64,
    pub commit_batches: AtomicU64,
    pub commit_failures: AtomicU64,
    pub commit_micros: AtomicU64,
    pub deliveries: AtomicU64,
    pub slow_consumer_drops: AtomicU64,
    pub connections_opened: AtomicU64,
}

/// The one instance (counters are process-wide, like the process's sockets).
pub static METRICS: Metrics = Metrics {
    messages_committed: AtomicU64::new(0),
    commit_batches: AtomicU64::new(0),
    commit_failures: AtomicU64::new(0),
    commit_micros: AtomicU64::new(0),
    deliveries: AtomicU64::new(0),
    slow_consumer_drops: AtomicU64::new(0),
    connections_opened: AtomicU64::new(0),
};

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

/// Renders every counter plus the given gauges.
pub fn render(connections: usize, rooms: usize) -> String {
    let m = &METRICS;
    let mut out = String::new();
    let mut line = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    line(
        "chat_connections",
        "gauge",
        "Open WebSocket connections.",
        connections as u64,
    );
    line("chat_rooms", "gauge", "Rooms.", rooms as u64);
    line(
        "chat_connections_opened_total",
        "counter",
        "WebSocket connections accepted.",
        m.connections_opened.load(Relaxed),
    );
    line(
        "chat_messages_committed_total",
        "counter",
        "Messages durably stored.",
        m.messages_committed.load(Relaxed),
    );
    line(
        "chat_commit_batches_total",
        "counter",
        "Commit transactions.",
        m.commit_batches.load(Relaxed),
    );
    line(
        "chat_commit_failures_total",
        "counter",
        "Commit transactions that failed.",
        m.commit_failures.load(Relaxed),
    );
    line(
        "chat_commit_microseconds_total",
        "counter",
        "Time spent committing, in microseconds.",
        m.commit_micros.load(Relaxed),
    );
    line(
        "chat_deliveries_total",
        "counter",
        "Frames queued for delivery to subscribers.",
        m.deliveries.load(Relaxed),
    );
    line(
        "chat_slow_consumer_drops_total",
        "counter",
        "Connections closed because their queue was full.",
        m.slow_consumer_drops.load(Relaxed),
    );
    out
}
