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
pub fn render(connections: usize, live_rooms: usize) -> String {
    let m = &METRICS;
    let gauges = [
        (
            "chat_connections",
            "Open WebSocket connections.",
            connections as u64,
        ),
        (
            "chat_live_rooms",
            "Rooms with a connection receiving, previewing or open in them.",
            live_rooms as u64,
        ),
    ];
    let counters = [
        (
            "chat_connections_opened_total",
            "WebSocket connections accepted.",
            &m.connections_opened,
        ),
        (
            "chat_messages_committed_total",
            "Messages durably stored.",
            &m.messages_committed,
        ),
        (
            "chat_commit_batches_total",
            "Commit transactions.",
            &m.commit_batches,
        ),
        (
            "chat_commit_failures_total",
            "Commit transactions that failed.",
            &m.commit_failures,
        ),
        (
            "chat_commit_microseconds_total",
            "Time spent committing, in microseconds.",
            &m.commit_micros,
        ),
        (
            "chat_deliveries_total",
            "Frames queued for delivery to connections.",
            &m.deliveries,
        ),
        (
            "chat_slow_consumer_drops_total",
            "Connections closed because their queue was full.",
            &m.slow_consumer_drops,
        ),
    ];
    let mut out = String::new();
    let rows = gauges
        .into_iter()
        .map(|(name, help, value)| (name, "gauge", help, value))
        .chain(
            counters
                .into_iter()
                .map(|(name, help, counter)| (name, "counter", help, counter.load(Relaxed))),
        );
    for (name, kind, help, value) in rows {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    out
}
