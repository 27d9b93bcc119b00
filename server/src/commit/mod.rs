//! The batch committer: the one place state changes become durable and
//! ordered.
//!
//! Commands from every connection and server function queue here. One thread
//! takes everything queued (up to [`MAX_BATCH`]) and commits it in one
//! transaction ([`write`]), in which every command is authorised again
//! ([`plan`], over `chat::policy`) and every event gets its room's next
//! `seq`; only then does it publish and answer ([`publish`]): ack means
//! durable, and delivery order is commit order. While one batch is being
//! written the next one gathers, so a busy server writes large batches and an
//! idle one writes at once, with no timer adding latency.
//!
//! # Layout
//! - [`plan`]: what a batch does, decided without I/O.
//! - [`write`]: the batch's transaction over `store::EventTx`.
//! - [`publish`]: after COMMIT, in batch order: frames and answers.

pub mod plan;
pub mod publish;
pub mod write;

use crate::{
    hub::{Conn, Hub},
    metrics::{self, METRICS},
    store::{Events, Health},
};
use app::protocol::{ApiError, ErrorCode, UserInfo};
use plan::Command;
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex,
};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;
use write::{Entry, Receipt};

/// Most messages in one transaction.
pub const MAX_BATCH: usize = 1024;
/// Sends that may wait for the committer before senders are made to wait.
const QUEUE: usize = 16 * 1024;

/// Where the outcome of a command goes.
#[derive(Debug)]
pub enum Reply {
    /// Queue an `ack` (or `error`) frame on the sender's connection.
    Socket(Arc<Conn>),
    /// Hand the receipt to the caller (a server function, a form, a join).
    Caller(oneshot::Sender<Result<Receipt, ApiError>>),
}

/// A command waiting to be committed.
#[derive(Debug)]
pub struct Submitted {
    pub actor: UserInfo,
    /// None only for MarkRead.
    pub client_id: Option<String>,
    pub command: Command,
    pub reply: Reply,
    pub queued_at: std::time::Instant,
}

/// Handle for submitting sends.
#[derive(Debug, Clone)]
pub struct Committer {
    tx: mpsc::Sender<Submitted>,
    health: Arc<WriteHealth>,
}

/// Whether the write path works, for readiness: the outcome of the last
/// commit, and of the last write probe made because of it.
#[derive(Debug, Default)]
pub struct WriteHealth {
    /// The last commit (or probe) failed.
    failing: AtomicBool,
    /// When readiness last probed, and what it found: probes are throttled so
    /// that polling `/readyz` cannot turn into a stream of fsyncs.
    probed: Mutex<Option<(std::time::Instant, bool)>>,
}

/// Least time between two write probes.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl WriteHealth {
    fn record(&self, ok: bool) {
        self.failing.store(!ok, Ordering::Release);
    }
}

impl Committer {
    /// Submits a command and waits for its receipt (after COMMIT).
    pub async fn call(
        &self,
        actor: UserInfo,
        client_id: Option<String>,
        command: Command,
    ) -> Result<Receipt, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Submitted {
            actor,
            client_id,
            command,
            reply: Reply::Caller(tx),
            queued_at: std::time::Instant::now(),
        })
        .await?;
        rx.await.unwrap_or_else(|_| {
            Err(ApiError::unavailable(
                "The server is shutting down; try again.",
            ))
        })
    }

    /// Starts the committer. When `stop` is cancelled it takes no new sends,
    /// commits every queued one, and the returned task ends.
    pub fn spawn(
        events: Arc<dyn Events>,
        hub: Hub,
        stop: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let health = Arc::new(WriteHealth::default());
        // The committer runs on a thread of its own, not as a task among the
        // connections' tasks: a batch is a dozen round trips to SQLite's
        // thread, and as a task each of them waited behind every writer task
        // a fan-out had just woken (1,000 readers at 500k deliveries/s: p99
        // 47–72 ms on its own thread against 74–118 ms as a task, 3 runs
        // each, `bench/results/2026-12-02-committer-thread.md`).
        // `Handle::block_on` keeps the runtime's timers and `tokio::spawn`
        // for what it calls.
        let runtime = tokio::runtime::Handle::current();
        let health_run = health.clone();
        let task = tokio::task::spawn_blocking(move || {
            runtime.block_on(run(rx, events, hub, health_run, stop));
        });
        (Self { tx, health }, task)
    }

    /// Whether messages can be committed now: the committer is running and
    /// its last commit succeeded, or, when it failed, a write probe (at most
    /// one a second) succeeds. `Err` says what is wrong.
    pub async fn ready(&self, store: &dyn Health) -> Result<(), &'static str> {
        if self.tx.is_closed() {
            return Err("the committer has stopped");
        }
        if !self.health.failing.load(Ordering::Acquire) {
            return Ok(());
        }
        // Copied out so the lock is not held across the probe's await.
        let last = *self.health.probed.lock().unwrap_or_else(|p| p.into_inner());
        let recent = last.filter(|(at, _)| at.elapsed() < PROBE_EVERY);
        let ok = match recent {
            Some((_, ok)) => ok,
            None => {
                let ok = match store.probe_write(crate::now_ms()).await {
                    Ok(()) => true,
                    Err(err) => {
                        tracing::warn!(cause = %err, "write probe failed");
                        false
                    }
                };
                *self.health.probed.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((std::time::Instant::now(), ok));
                // A probe that writes proves what a commit would have.
                if ok {
                    self.health.record(true);
                }
                ok
            }
        };
        if ok {
            Ok(())
        } else {
            Err("the database cannot be written")
        }
    }

    /// Queues a command, waiting while the queue is full (backpressure).
    pub async fn submit(&self, request: Submitted) -> Result<(), ApiError> {
        self.tx.send(request).await.map_err(|_| {
            ApiError::unavailable("The server is shutting down; send again after reconnecting.")
        })
    }
}

async fn run(
    mut rx: mpsc::Receiver<Submitted>,
    events: Arc<dyn Events>,
    hub: Hub,
    health: Arc<WriteHealth>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let first = tokio::select! {
            request = rx.recv() => request,
            () = stop.cancelled(), if !rx.is_closed() => {
                // Refuse new commands; what is queued is still committed below.
                rx.close();
                continue;
            }
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        commit(&*events, &hub, &health, &mut batch).await;
    }
    tracing::info!("committer stopped: every queued command is committed");
}

async fn commit(events: &dyn Events, hub: &Hub, health: &WriteHealth, batch: &mut Vec<Submitted>) {
    // One commit, one time: every event of the batch is stamped alike.
    let ts = crate::now_ms();
    let started = std::time::Instant::now();
    let (entries, replies): (Vec<Entry>, Vec<Reply>) = batch
        .drain(..)
        .map(|s| {
            (
                Entry {
                    actor: s.actor,
                    client_id: s.client_id,
                    command: s.command,
                },
                s.reply,
            )
        })
        .unzip();
    let answers = write::commit_batch_effects(events, &entries, ts).await;
    let micros = started.elapsed().as_micros() as u64;
    metrics::add(&METRICS.commit_batches, 1);
    metrics::add(&METRICS.commit_micros, micros);
    let unavailable = answers
        .iter()
        .filter(|a| matches!(a, Err(e) if e.code == ErrorCode::Unavailable))
        .count();
    let posted = entries
        .iter()
        .zip(&answers)
        .filter(|(e, a)| {
            matches!(e.command, Command::Post { .. }) && matches!(a, Ok((r, _)) if !r.duplicate)
        })
        .count();
    metrics::add(&METRICS.messages_committed, posted as u64);
    let failed = |a: &write::Answer| matches!(a, Err(e) if matches!(e.code, ErrorCode::Unavailable | ErrorCode::Internal));
    if answers.iter().any(failed) {
        metrics::add(&METRICS.commit_failures, 1);
    }
    // Refusals are answers, not failures: only unavailability marks the
    // write path unhealthy.
    health.record(unavailable < answers.len() || answers.is_empty());
    tracing::debug!(size = entries.len(), elapsed_us = micros, "batch committed");
    publish::publish(hub, entries, replies, answers);
}
