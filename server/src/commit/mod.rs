//! The batch committer: the one place messages become durable and ordered.
//!
//! Sends from every connection queue here. One task takes everything queued
//! (up to [`MAX_BATCH`]), commits it in one transaction, in which the store
//! assigns each message its room's next `seq`, and only then publishes the
//! messages and acknowledges the senders: ack means durable, and delivery
//! order is commit order. While one batch is being written the next one
//! gathers, so a busy server writes large batches and an idle one writes at
//! once, with no timer adding latency.

pub mod plan;
pub mod write;

use crate::{
    hub::{encode, Conn, Hub, Out, Room},
    metrics::{self, METRICS},
    store::{Committed, Events, Health, NewMessage, StoreError},
};
use app::protocol::{ApiError, ChatMessage, ErrorCode, ServerFrame, UserInfo};
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex,
};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

/// Most messages in one transaction.
pub const MAX_BATCH: usize = 1024;
/// Sends that may wait for the committer before senders are made to wait.
const QUEUE: usize = 16 * 1024;

/// Where the outcome of a send goes.
#[derive(Debug)]
pub enum Reply {
    /// Queue an `ack` (or `error`) frame on the sender's connection.
    Conn(Arc<Conn>),
    /// Hand the stored message to an HTTP handler.
    Http(oneshot::Sender<Result<ChatMessage, ApiError>>),
}

/// A message waiting to be committed.
#[derive(Debug)]
pub struct SendRequest {
    pub room: Arc<Room>,
    pub author: UserInfo,
    pub body: String,
    pub client_id: String,
    pub reply: Reply,
}

/// Handle for submitting sends.
#[derive(Debug, Clone)]
pub struct Committer {
    tx: mpsc::Sender<SendRequest>,
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
    /// Starts the committer. When `stop` is cancelled it takes no new sends,
    /// commits every queued one, and the returned task ends.
    pub fn spawn(
        events: Arc<dyn Events>,
        hub: Hub,
        stop: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let health = Arc::new(WriteHealth::default());
        let task = tokio::spawn(run(rx, events, hub, health.clone(), stop));
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

    /// Queues a send, waiting while the queue is full (backpressure).
    pub async fn submit(&self, request: SendRequest) -> Result<(), ApiError> {
        self.tx.send(request).await.map_err(|_| {
            ApiError::new(
                ErrorCode::Unavailable,
                "The server is shutting down; send again after reconnecting.",
            )
        })
    }
}

async fn run(
    mut rx: mpsc::Receiver<SendRequest>,
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
                // Refuse new sends; what is queued is still committed below.
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
    tracing::info!("committer stopped: every queued message is committed");
}

async fn commit(
    events: &dyn Events,
    hub: &Hub,
    health: &WriteHealth,
    batch: &mut Vec<SendRequest>,
) {
    // One commit, one time: every message of the batch is stamped alike.
    let ts = crate::now_ms();
    let started = std::time::Instant::now();
    let outcomes = commit_rows(events, health, batch, ts).await;
    let micros = started.elapsed().as_micros() as u64;
    metrics::add(&METRICS.commit_batches, 1);
    metrics::add(&METRICS.commit_micros, micros);
    tracing::debug!(size = batch.len(), elapsed_us = micros, "batch committed");
    for (request, outcome) in batch.drain(..).zip(outcomes) {
        match outcome {
            Ok(done) => settle(hub, request, done),
            Err(error) => refuse(request.reply, error, &request.room, request.client_id),
        }
    }
}

/// Commits the batch's rows; one outcome per request, in order.
///
/// A row that breaks a constraint (its room is gone, say) fails the whole
/// transaction: the batch is then committed again row by row, so one bad row
/// never fails other people's messages. A database failure fails them all.
async fn commit_rows(
    events: &dyn Events,
    health: &WriteHealth,
    batch: &[SendRequest],
    ts: i64,
) -> Vec<Result<Committed, ApiError>> {
    let rows: Vec<NewMessage> = batch
        .iter()
        .map(|r| NewMessage {
            room_id: r.room.id,
            author_id: r.author.id,
            body: &r.body,
            client_id: &r.client_id,
            ts,
        })
        .collect();
    let outcomes = match events.commit_posts(&rows).await {
        Ok(committed) => committed.into_iter().map(Ok).collect(),
        Err(err) if err.is_constraint() && rows.len() > 1 => {
            tracing::warn!(cause = %err, size = rows.len(), "batch refused; committing its rows one by one");
            let mut outcomes = Vec::with_capacity(rows.len());
            for row in &rows {
                let outcome = match events.commit_posts(std::slice::from_ref(row)).await {
                    Ok(mut one) if one.len() == 1 => Ok(one.remove(0)),
                    Ok(_) => Err(not_stored(None)),
                    Err(err) => Err(not_stored(Some(err))),
                };
                outcomes.push(outcome);
            }
            outcomes
        }
        Err(err) => {
            let error = not_stored(Some(err));
            rows.iter().map(|_| Err(error.clone())).collect()
        }
    };
    let failed = outcomes.iter().filter(|o| o.is_err()).count();
    metrics::add(
        &METRICS.messages_committed,
        (outcomes.len() - failed) as u64,
    );
    if failed > 0 {
        metrics::add(&METRICS.commit_failures, 1);
    }
    health.record(failed < outcomes.len() || outcomes.is_empty());
    outcomes
}

/// The error a sender gets for a message that was not stored (logged here).
fn not_stored(cause: Option<StoreError>) -> ApiError {
    match cause {
        Some(err) if err.is_constraint() => {
            tracing::error!(cause = %err, "message refused by the store");
            ApiError::new(
                ErrorCode::Internal,
                "The message could not be stored; it was not sent.",
            )
        }
        cause => {
            if let Some(err) = cause {
                tracing::error!(cause = %err, "commit failed; senders told to retry");
            }
            ApiError::new(
                ErrorCode::Unavailable,
                "The message could not be stored (database unavailable); it was not sent. Try again.",
            )
        }
    }
}

/// Acknowledges a committed message and delivers it (a resend only gets its ack).
fn settle(hub: &Hub, request: SendRequest, done: Committed) {
    let resend = done.duplicate.is_some();
    let (room, body) = match done.duplicate {
        None => (request.room.name.to_string(), request.body),
        // A resend (the same author's client_id): acknowledge what was
        // stored the first time, in the room it was stored in.
        Some(original) => (original.room, original.body),
    };
    let message = ChatMessage {
        room,
        seq: done.seq,
        id: done.id,
        author: request.author,
        body,
        ts: done.ts,
        client_id: request.client_id,
    };
    // Serialised once, into the frame every subscriber shares; a resend was
    // delivered the first time and is only acked.
    let publish = |message: ChatMessage| {
        if !resend {
            let frame = encode(&ServerFrame::Message(message));
            hub.publish(&request.room, done.seq, &frame);
        }
    };
    match request.reply {
        Reply::Conn(conn) => {
            let ack = encode(&ServerFrame::Ack {
                room: message.room.clone(),
                client_id: message.client_id.clone(),
                seq: done.seq,
                id: done.id,
                ts: done.ts,
            });
            publish(message);
            conn.push(Out::Frame(ack));
        }
        Reply::Http(tx) => {
            // The no-JavaScript form: rare enough for a copy.
            publish(message.clone());
            let _ = tx.send(Ok(message)); // the caller may have gone
        }
    }
}

/// Tells a sender its message was not stored.
fn refuse(reply: Reply, error: ApiError, room: &Room, client_id: String) {
    match reply {
        Reply::Conn(conn) => {
            let frame = error.frame(Some(room.name.to_string()), Some(client_id));
            conn.push(Out::Frame(encode(&frame)));
        }
        Reply::Http(tx) => {
            let _ = tx.send(Err(error)); // the caller may have gone
        }
    }
}
