//! The batch committer: the one place messages become durable and ordered.
//!
//! Sends from every connection queue here. One task takes everything queued
//! (up to [`MAX_BATCH`]), commits it in one transaction, in which the store
//! assigns each message its room's next `seq`, and only then publishes the
//! messages and acknowledges the senders: ack means durable, and delivery
//! order is commit order. While one batch is being written the next one
//! gathers, so a busy server writes large batches and an idle one writes at
//! once, with no timer adding latency.

use crate::{
    hub::{encode, Conn, Hub, Out, Room},
    metrics::{self, METRICS},
    store::{NewMessage, SharedStore},
};
use app::protocol::{ApiError, ChatMessage, ErrorCode, ServerFrame, UserInfo};
use std::sync::Arc;
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
}

impl Committer {
    /// Starts the committer. When `stop` is cancelled it takes no new sends,
    /// commits every queued one, and the returned task ends.
    pub fn spawn(store: SharedStore, hub: Hub, stop: CancellationToken) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(rx, store, hub, stop));
        (Self { tx }, task)
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
    store: SharedStore,
    hub: Hub,
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
        commit(&store, &hub, &mut batch).await;
    }
    tracing::info!("committer stopped: every queued message is committed");
}

async fn commit(store: &SharedStore, hub: &Hub, batch: &mut Vec<SendRequest>) {
    // One commit, one time: every message of the batch is stamped alike.
    let ts = crate::now_ms();
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
    let started = std::time::Instant::now();
    let result = store.commit(&rows).await;
    let size = rows.len();
    drop(rows); // releases the borrow of `batch`, drained below
    let micros = started.elapsed().as_micros() as u64;
    metrics::add(&METRICS.commit_batches, 1);
    metrics::add(&METRICS.commit_micros, micros);
    match &result {
        Ok(_) => metrics::add(&METRICS.messages_committed, size as u64),
        Err(_) => metrics::add(&METRICS.commit_failures, 1),
    }
    tracing::debug!(size, elapsed_us = micros, "batch committed");
    match result {
        Ok(committed) => {
            for (request, done) in batch.drain(..).zip(committed) {
                let resend = done.duplicate.is_some();
                let body = match done.duplicate {
                    None => request.body,
                    // A resend: acknowledge what was stored the first time.
                    Some(original) if original.author_id == request.author.id => original.body,
                    Some(_) => {
                        let error = ApiError::new(
                            ErrorCode::BadClientId,
                            "This client_id is already used in this room; make a new UUID.",
                        );
                        refuse(request.reply, error, &request.room, request.client_id);
                        continue;
                    }
                };
                let message = ChatMessage {
                    room: request.room.name.to_string(),
                    seq: done.seq,
                    id: done.id,
                    author: request.author,
                    body,
                    ts: done.ts,
                    client_id: request.client_id,
                };
                // Serialised once, into the frame every subscriber shares; a
                // resend was delivered the first time and is only acked.
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
        }
        Err(err) => {
            tracing::error!(cause = %err, size = batch.len(), "commit failed; senders told to retry");
            let error = ApiError::new(
                ErrorCode::Unavailable,
                "The message could not be stored (database unavailable); it was not sent. Try again.",
            );
            for request in batch.drain(..) {
                refuse(
                    request.reply,
                    error.clone(),
                    &request.room,
                    request.client_id,
                );
            }
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
