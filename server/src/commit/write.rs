//! The transaction of one v2 batch (plan v2 §3, steps 1–5): claim the keys,
//! read rooms and standings, [`plan`](super::plan::plan) the batch, write
//! what it accepted, record the commands, commit (running the store's
//! hooks). Publishing (step 6) is the caller's, after this returns.
//!
//! Refusals never fail the transaction. A constraint error (a bug, or a
//! cross-node race such as two nodes creating one public name) re-runs the
//! batch one command per transaction, so one bad command never fails the
//! others (issue 10); any other store error answers `unavailable` to the
//! whole batch.

use super::plan::{self, Command, EventKind, Item, Outcome, Prior, RoomRef, RoomView};
use crate::store::{
    Claim, Done, Events, MemberChange, MessageRow, NewEvent, NewRoom, ReadState, RoomChange,
    StoreError,
};
use app::protocol::{ApiError, ErrorCode, RoomKind, UserInfo};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// One command of a batch, without its reply.
#[derive(Debug, Clone)]
pub struct Entry {
    pub actor: UserInfo,
    /// None only for MarkRead.
    pub client_id: Option<String>,
    pub command: Command,
}

/// What a committed command answers; also what `commands.result` keeps, so
/// a repeat gets the same answer (a post's is the JSON S3 and migration
/// 0004 write: `{room_id, seq, message_id, ts}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub room_id: i64,
    /// The seq of the command's first event (none: a repeated join, a mark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<i64>,
    pub ts: i64,
    /// A repeat of a command processed before: answered, not applied again.
    #[serde(skip)]
    pub duplicate: bool,
}

/// What an accepted command changed, for publishing after COMMIT (never
/// stored: a repeat publishes nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// Its events, in seq order: (room_id, seq, kind).
    pub events: Vec<(i64, i64, EventKind)>,
    /// The room as the batch left it right after this command.
    pub room: Option<RoomView>,
    /// The actor's read marker after a `MarkRead`.
    pub read: Option<ReadState>,
}

/// A committed command's answer and, when it was applied now, its effects.
pub type Answer = Result<(Receipt, Effects), ApiError>;

/// Commits `batch` at time `ts`; one answer per entry, in order.
pub async fn commit_batch(
    events: &dyn Events,
    batch: &[Entry],
    ts: i64,
) -> Vec<Result<Receipt, ApiError>> {
    commit_batch_effects(events, batch, ts)
        .await
        .into_iter()
        .map(|a| a.map(|(receipt, _)| receipt))
        .collect()
}

/// [`commit_batch`], with what each accepted command changed.
pub async fn commit_batch_effects(events: &dyn Events, batch: &[Entry], ts: i64) -> Vec<Answer> {
    match write(events, batch, ts).await {
        Ok(answers) => answers,
        Err(err) if err.is_constraint() && batch.len() > 1 => {
            tracing::warn!(cause = %err, size = batch.len(), "batch refused; committing its commands one by one");
            let mut answers = Vec::with_capacity(batch.len());
            for entry in batch {
                let answer = match write(events, std::slice::from_ref(entry), ts).await {
                    Ok(mut one) => one.remove(0),
                    Err(err) => Err(not_stored(err)),
                };
                answers.push(answer);
            }
            answers
        }
        Err(err) => {
            let error = not_stored(err);
            batch.iter().map(|_| Err(error.clone())).collect()
        }
    }
}

/// The answer to a command that was not stored (logged here).
fn not_stored(err: StoreError) -> ApiError {
    if err.is_constraint() {
        tracing::error!(cause = %err, "command refused by the store");
        ApiError::new(ErrorCode::Internal, "The command could not be stored.")
    } else {
        tracing::error!(cause = %err, "commit failed; senders told to retry");
        ApiError::unavailable(
            "The database is unavailable right now; nothing was changed. Try again.",
        )
    }
}

/// The JSON payload of an event (plan v2 §2); none for `posted` and
/// `member_left`.
fn payload(kind: &EventKind) -> Option<String> {
    let value = match kind {
        EventKind::Posted | EventKind::MemberLeft { .. } => return None,
        EventKind::MemberJoined { role, silent, .. } => {
            serde_json::json!({"role": role.as_str(), "silent": silent})
        }
        EventKind::Renamed { name, old_name } => {
            serde_json::json!({"name": name, "old_name": old_name})
        }
        EventKind::TopicChanged { topic } => serde_json::json!({"topic": topic}),
    };
    Some(value.to_string())
}

fn kind_name(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::Posted => "posted",
        EventKind::MemberJoined { .. } => "member_joined",
        EventKind::MemberLeft { .. } => "member_left",
        EventKind::Renamed { .. } => "renamed",
        EventKind::TopicChanged { .. } => "topic_changed",
    }
}

/// The batch in one transaction. `Err` only for store failures.
async fn write(events: &dyn Events, batch: &[Entry], ts: i64) -> Result<Vec<Answer>, StoreError> {
    let mut tx = events.begin().await?;

    // 1. Claim the keys.
    let keys: Vec<(i64, &str)> = batch
        .iter()
        .filter_map(|e| e.client_id.as_deref().map(|k| (e.actor.id, k)))
        .collect();
    let mut claims = tx.claim(&keys).await?.into_iter();
    let claims: Vec<Claim> = batch
        .iter()
        .map(|e| match e.client_id {
            Some(_) => claims.next().unwrap_or(Claim::New),
            None => Claim::New,
        })
        .collect();

    // 2. What the plan needs to know.
    let mut ids: Vec<i64> = batch.iter().filter_map(|e| e.command.room_id()).collect();
    ids.sort_unstable();
    ids.dedup();
    let rooms: HashMap<i64, RoomView> = tx
        .rooms(&ids)
        .await?
        .into_iter()
        .map(|r| {
            (
                r.id,
                RoomView {
                    kind: r.kind,
                    name: r.name,
                    name_key: r.name_key,
                    topic: r.topic,
                    member_count: r.member_count,
                },
            )
        })
        .collect();
    let mut pairs: Vec<(i64, i64)> = batch
        .iter()
        .filter_map(|e| e.command.room_id().map(|r| (r, e.actor.id)))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let standings = tx
        .standings(&pairs)
        .await?
        .into_iter()
        .map(|(room, user, s)| ((room, user), s))
        .collect();
    let wanted: Vec<&str> = batch
        .iter()
        .filter_map(|e| match &e.command {
            Command::CreateRoom { name_key, .. } | Command::Rename { name_key, .. } => {
                Some(name_key.as_str())
            }
            _ => None,
        })
        .collect();
    let names_taken: HashSet<String> = tx.names_taken(&wanted).await?.into_iter().collect();

    // 3. The plan.
    let items: Vec<Item> = batch
        .iter()
        .zip(&claims)
        .map(|(e, claim)| Item {
            actor: &e.actor,
            client_id: e.client_id.as_deref(),
            command: &e.command,
            prior: match claim {
                Claim::New => Prior::Fresh,
                Claim::Done { kind, .. } => Prior::Done {
                    kind: kind.as_str(),
                },
            },
        })
        .collect();
    let planned = plan::plan(&items, &rooms, &standings, &names_taken);

    // 4. The writes. Renames and topics first: a rename frees its old name
    // for a creation later in the batch, which the plan allowed.
    let room_changes: Vec<RoomChange> = planned
        .outcomes
        .iter()
        .zip(batch)
        .filter(|(outcome, _)| matches!(outcome, Outcome::Accepted(_)))
        .filter_map(|(_, entry)| match &entry.command {
            Command::Rename {
                room_id,
                name,
                name_key,
            } => Some(RoomChange {
                room_id: *room_id,
                name: Some((name.as_str(), name_key.as_str())),
                topic: None,
            }),
            Command::SetTopic { room_id, topic } => Some(RoomChange {
                room_id: *room_id,
                name: None,
                topic: Some(topic.as_str()),
            }),
            _ => None,
        })
        .collect();
    tx.update_rooms(&room_changes).await?;
    // Then creations: their events need the new ids.
    let mut created: HashMap<usize, i64> = HashMap::new();
    {
        let mut new_rooms = Vec::new();
        let mut at_of = Vec::new();
        for (at, outcome) in planned.outcomes.iter().enumerate() {
            if let (
                Outcome::Accepted(evs),
                Command::CreateRoom {
                    name,
                    name_key,
                    topic,
                },
            ) = (outcome, &batch[at].command)
            {
                new_rooms.push(NewRoom {
                    kind: RoomKind::Public,
                    name,
                    name_key,
                    topic,
                    created_by: batch[at].actor.id,
                    last_seq: evs.len() as i64,
                    ts,
                });
                at_of.push(at);
            }
        }
        let new_ids = tx.insert_rooms(&new_rooms).await?;
        created.extend(at_of.into_iter().zip(new_ids));
    }
    let counts: Vec<(i64, i64)> = planned.counts.iter().map(|(&r, &n)| (r, n)).collect();
    let mut next: BTreeMap<i64, i64> = tx.reserve_seqs(&counts).await?.into_iter().collect();
    if next.len() < counts.len() {
        return Err(StoreError::Missing("room"));
    }
    // Seqs in batch order per room; new rooms count from 1.
    let mut next_created: HashMap<usize, i64> = HashMap::new();
    let mut placed: Vec<Vec<(i64, i64)>> = vec![Vec::new(); batch.len()]; // (room, seq) per event
    for (at, outcome) in planned.outcomes.iter().enumerate() {
        let Outcome::Accepted(evs) = outcome else {
            continue;
        };
        for e in evs {
            let (room, seq) = match e.room {
                RoomRef::Existing(id) => {
                    let seq = next.get_mut(&id).ok_or(StoreError::Missing("room"))?;
                    *seq += 1;
                    (id, *seq - 1)
                }
                RoomRef::Created(c) => {
                    let seq = next_created.entry(c).or_insert(1);
                    *seq += 1;
                    (created[&c], *seq - 1)
                }
            };
            placed[at].push((room, seq));
        }
    }

    // Messages: one per accepted post, at its `posted` event's seq.
    let mentions: Vec<Option<String>> = batch
        .iter()
        .map(|e| match &e.command {
            Command::Post { mentions, .. } if !mentions.is_empty() => {
                Some(serde_json::to_string(mentions).unwrap_or_default())
            }
            _ => None,
        })
        .collect();
    let mut posts = Vec::new();
    let mut rows = Vec::new();
    for (at, outcome) in planned.outcomes.iter().enumerate() {
        if let (Outcome::Accepted(_), Command::Post { body, reply_to, .. }) =
            (outcome, &batch[at].command)
        {
            let (room_id, seq) = placed[at][0];
            rows.push(MessageRow {
                room_id,
                seq,
                author_id: batch[at].actor.id,
                body,
                client_id: batch[at].client_id.as_deref().unwrap_or_default(),
                reply_to: *reply_to,
                mentions: mentions[at].as_deref(),
                ts,
            });
            posts.push(at);
        }
    }
    let inserted = tx.insert_messages(&rows).await?;
    let message_ids: HashMap<usize, i64> =
        posts.into_iter().zip(inserted.iter().copied()).collect();

    let payloads: Vec<Vec<Option<String>>> = planned
        .outcomes
        .iter()
        .map(|o| match o {
            Outcome::Accepted(evs) => evs.iter().map(|e| payload(&e.kind)).collect(),
            _ => Vec::new(),
        })
        .collect();
    let mut new_events = Vec::new();
    let mut members = Vec::new();
    let mut marks = Vec::new();
    for (at, outcome) in planned.outcomes.iter().enumerate() {
        let Outcome::Accepted(evs) = outcome else {
            continue;
        };
        let actor = batch[at].actor.id;
        for (i, e) in evs.iter().enumerate() {
            let (room_id, seq) = placed[at][i];
            let target_id = match e.kind {
                EventKind::MemberJoined { user_id, .. } | EventKind::MemberLeft { user_id } => {
                    Some(user_id)
                }
                _ => None,
            };
            new_events.push(NewEvent {
                room_id,
                seq,
                kind: kind_name(&e.kind),
                actor_id: Some(actor),
                target_id,
                message_id: match e.kind {
                    EventKind::Posted => message_ids.get(&at).copied(),
                    _ => None,
                },
                payload: payloads[at][i].as_deref(),
                ts,
            });
            match &e.kind {
                EventKind::MemberJoined { user_id, role, .. } => members.push(MemberChange {
                    room_id,
                    user_id: *user_id,
                    join: Some(*role),
                    seq,
                    ts,
                }),
                EventKind::MemberLeft { user_id } => members.push(MemberChange {
                    room_id,
                    user_id: *user_id,
                    join: None,
                    seq,
                    ts,
                }),
                _ => {}
            }
        }
        if let Command::MarkRead { room_id, seq } = &batch[at].command {
            marks.push((*room_id, actor, *seq));
        }
    }
    tx.append_events(&new_events).await?;
    tx.apply_members(&members).await?;
    tx.record_mentions(&rows, &inserted).await?;
    let reads: HashMap<(i64, i64), ReadState> = tx
        .mark_read(&marks)
        .await?
        .into_iter()
        .map(|r| ((r.room_id, r.user_id), r))
        .collect();

    // The answers, and the commands to record.
    let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
    for (at, outcome) in planned.outcomes.iter().enumerate() {
        let answer = match outcome {
            Outcome::Accepted(evs) => {
                let room_id = match batch[at].command.room_id() {
                    Some(id) => id,
                    None => created[&at],
                };
                let effects = Effects {
                    events: placed[at]
                        .iter()
                        .zip(evs)
                        .map(|(&(room, seq), e)| (room, seq, e.kind.clone()))
                        .collect(),
                    room: planned.views[at].clone(),
                    read: match &batch[at].command {
                        Command::MarkRead { room_id, .. } => {
                            reads.get(&(*room_id, batch[at].actor.id)).copied()
                        }
                        _ => None,
                    },
                };
                Ok((
                    Receipt {
                        room_id,
                        seq: placed[at].first().map(|&(_, seq)| seq),
                        message_id: message_ids.get(&at).copied(),
                        ts,
                        duplicate: false,
                    },
                    effects,
                ))
            }
            Outcome::Repeat(first) => answers[*first].clone().map(|(r, _)| {
                (
                    Receipt {
                        duplicate: true,
                        ..r
                    },
                    Effects::default(),
                )
            }),
            Outcome::Duplicate => match &claims[at] {
                Claim::Done {
                    result: Some(result),
                    ..
                } => Ok(serde_json::from_str::<Receipt>(result)
                    .map(|r| {
                        (
                            Receipt {
                                duplicate: true,
                                ..r
                            },
                            Effects::default(),
                        )
                    })
                    .map_err(|_| StoreError::Missing("command result"))?),
                _ => return Err(StoreError::Missing("command result")),
            },
            Outcome::Refused(error) => Err(error.clone()),
        };
        answers.push(answer);
    }
    let results: Vec<(usize, String)> = planned
        .outcomes
        .iter()
        .enumerate()
        .filter(|(at, o)| matches!(o, Outcome::Accepted(_)) && batch[*at].client_id.is_some())
        .filter_map(|(at, _)| {
            let (receipt, _) = answers[at].as_ref().ok()?;
            Some((at, serde_json::to_string(receipt).ok()?))
        })
        .collect();
    let done: Vec<Done> = results
        .iter()
        .map(|(at, result)| {
            let e = &batch[*at];
            Done {
                user_id: e.actor.id,
                client_id: e.client_id.as_deref().unwrap_or_default(),
                kind: e.command.kind(),
                room_id: answers[*at].as_ref().ok().map(|(r, _)| r.room_id),
                result,
                ts,
            }
        })
        .collect();
    tx.record(&done).await?;

    // 5. Commit (the hooks run in it).
    tx.commit().await?;
    Ok(answers)
}
