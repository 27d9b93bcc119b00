//! [`Events`] on SQLite: the committing transaction, and history, replay
//! and pages around a message read back from what it wrote.
//!
//! The transaction runs on the writing connection ([`super::writer`]),
//! synchronously on the committer's thread: each step is one prepared
//! statement run once per row (a key it looks up, a room whose seqs it
//! reserves, a message, an event, a command it records), with no round trip
//! between threads anywhere in a batch. The reads run on sqlx's pool.

use super::{
    room_kind, rows_per_statement, standing, user_info,
    writer::{conflict_or, Writer},
    SqliteHook, SqliteStore,
};
use crate::chat::policy::Standing;
use crate::store::{
    AppendedEvent, AroundPage, Claim, Done, EventTx, Events, HistoryPage, MemberChange, MessageRow,
    NewEvent, NewRoom, ReadState, Result, RoomChange, RoomState, StoreError, StoredMessage,
};
use app::protocol::{Event, EventKind, Role, RoomKind, UserInfo};
use async_trait::async_trait;
use rusqlite::OptionalExtension;
use serde::{de::DeserializeOwned, Deserialize};
use sqlx::{sqlite::SqliteRow, Row, SqliteConnection};
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

/// No author email: messages are shown to everyone.
const MESSAGE_COLUMNS: &str = "m.id, m.seq, m.author_id, u.name AS author_name, \
     u.picture AS author_picture, m.body, m.client_id, m.created_at, m.edited_at, \
     m.deleted_at, m.reply_to, m.mentions";

/// A replayed event's own columns, named apart from [`MESSAGE_COLUMNS`]
/// (which a `posted` event's row carries too).
const EVENT_COLUMNS: &str = "e.seq AS event_seq, e.kind AS event_kind, e.ts AS event_ts, \
     e.actor_id, e.target_id, e.payload";

/// A message from a row of [`MESSAGE_COLUMNS`].
fn message(row: &SqliteRow) -> Result<StoredMessage> {
    let mentions: Option<String> = row.try_get("mentions")?;
    let mentions = match mentions {
        Some(json) => serde_json::from_str(&json)
            .map_err(|err| StoreError::Database(sqlx::Error::Decode(err.into())))?,
        None => Vec::new(),
    };
    Ok(StoredMessage {
        id: row.try_get("id")?,
        seq: row.try_get("seq")?,
        author: user_info(row, "author_")?,
        body: row.try_get("body")?,
        client_id: row.try_get("client_id")?,
        ts: row.try_get("created_at")?,
        edited_at: row.try_get("edited_at")?,
        deleted: row.try_get::<Option<i64>, _>("deleted_at")?.is_some(),
        reply_to: row.try_get("reply_to")?,
        mentions,
    })
}

/// The payload of a `member_joined` event, as `commit::write` stores it.
#[derive(Deserialize)]
struct JoinedPayload {
    role: Role,
    #[serde(default)]
    silent: bool,
}

/// The payload of a `renamed` event; `old_name` is null when the room had
/// no name.
#[derive(Deserialize)]
struct RenamedPayload {
    name: String,
    #[serde(default)]
    old_name: Option<String>,
}

/// The payload of a `topic_changed` event.
#[derive(Deserialize)]
struct TopicPayload {
    topic: String,
}

/// An event row's JSON payload, read as `T`.
fn payload<T: DeserializeOwned>(row: &SqliteRow) -> Result<T, String> {
    let json: Option<String> = row.try_get("payload").map_err(|e| e.to_string())?;
    let json = json.ok_or("no payload")?;
    serde_json::from_str(&json).map_err(|e| format!("bad payload: {e}"))
}

/// What one row of [`Events::replay`]'s query records, or why this build
/// cannot render it. A user who is gone (the column set to NULL) is
/// `UserInfo::default()`: the event keeps its place in the log.
fn render(
    row: &SqliteRow,
    kind: &str,
    users: &HashMap<i64, UserInfo>,
) -> Result<EventKind, String> {
    let user = |column: &str| -> Result<UserInfo, String> {
        let id: Option<i64> = row.try_get(column).map_err(|e| e.to_string())?;
        Ok(id
            .and_then(|id| users.get(&id).cloned())
            .unwrap_or_default())
    };
    Ok(match kind {
        "posted" => {
            let id: Option<i64> = row.try_get("id").map_err(|e| e.to_string())?;
            if id.is_none() {
                return Err("its message is gone".into());
            }
            let message = message(row).map_err(|e| e.to_string())?;
            EventKind::Posted {
                message: message.into_v2(),
            }
        }
        "member_joined" => {
            let p: JoinedPayload = payload(row)?;
            EventKind::MemberJoined {
                user: user("target_id")?,
                role: p.role,
                silent: p.silent,
            }
        }
        "member_left" => EventKind::MemberLeft {
            user: user("target_id")?,
        },
        "renamed" => {
            let p: RenamedPayload = payload(row)?;
            EventKind::Renamed {
                name: p.name,
                old_name: p.old_name.unwrap_or_default(),
                by: user("actor_id")?,
            }
        }
        "topic_changed" => {
            let p: TopicPayload = payload(row)?;
            EventKind::TopicChanged {
                topic: p.topic,
                by: user("actor_id")?,
            }
        }
        _ => return Err("unknown kind".into()),
    })
}

/// The users among `ids` that exist, by id, as others see them.
async fn users_by_id(conn: &mut SqliteConnection, ids: &[i64]) -> Result<HashMap<i64, UserInfo>> {
    let mut users = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT id, name, picture FROM users WHERE id IN ({})",
            vec!["?"; chunk.len()].join(", ")
        );
        let mut query = sqlx::query(&sql);
        for &id in chunk {
            query = query.bind(id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let user = user_info(&row, "")?;
            users.insert(user.id, user);
        }
    }
    Ok(users)
}

/// The committer's transaction on SQLite: the writing connection inside
/// `BEGIN IMMEDIATE`, and the events appended so far, for the hooks.
///
/// Every step runs synchronously on the caller's thread (the committer's):
/// its futures are ready at once. Each statement is prepared once for the
/// connection's life and run once per row (a key, a room, a message, an
/// event), so no statement grows with the batch.
/// Dropped without [`EventTx::commit`] (an error, a hook's refusal, a
/// cancelled task), its [`Writer`] closes the connection, which rolls the
/// transaction back, and the next write opens a new one.
pub(super) struct SqliteEventTx {
    w: Writer,
    hooks: Arc<[Arc<dyn SqliteHook>]>,
    appended: Vec<AppendedEvent>,
}

#[async_trait]
impl Events for SqliteStore {
    async fn begin(&self) -> Result<Box<dyn EventTx>> {
        let mut w = self.writer().await?;
        // BEGIN IMMEDIATE takes the write lock up front, so the transaction
        // never has to upgrade a read lock (which SQLite may refuse with BUSY).
        w.conn()?.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(Box::new(SqliteEventTx {
            w,
            hooks: self.hooks.clone(),
            appended: Vec::new(),
        }))
    }

    async fn history(&self, room_id: i64, before: Option<i64>, limit: u32) -> Result<HistoryPage> {
        // One row more than asked says whether older ones exist: seqs are
        // shared by every event kind, so a gap below is no proof of the end.
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.author_id
             WHERE m.room_id = ? AND m.seq < ? ORDER BY m.seq DESC LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(room_id)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let has_more = rows.len() > limit as usize;
        let mut messages = rows
            .iter()
            .take(limit as usize)
            .map(message)
            .collect::<Result<Vec<_>>>()?;
        messages.reverse();
        Ok(HistoryPage { messages, has_more })
    }

    async fn replay(&self, room_id: i64, after: i64, limit: u32) -> Result<Vec<Event>> {
        // One read transaction: the users are those of the same snapshot.
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, {MESSAGE_COLUMNS} FROM room_events e
             LEFT JOIN messages m ON m.id = e.message_id
             LEFT JOIN users u ON u.id = m.author_id
             WHERE e.room_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(room_id)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        // A post's author comes with its message; the users the other
        // events name are loaded at once.
        let mut ids = Vec::new();
        for row in &rows {
            if row.try_get::<&str, _>("event_kind")? != "posted" {
                ids.extend(row.try_get::<Option<i64>, _>("actor_id")?);
                ids.extend(row.try_get::<Option<i64>, _>("target_id")?);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let users = users_by_id(&mut tx, &ids).await?;
        tx.commit().await?;

        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.try_get("event_seq")?;
            let kind: &str = row.try_get("event_kind")?;
            match render(row, kind, &users) {
                Ok(rendered) => events.push(Event {
                    room_id,
                    seq,
                    ts: row.try_get("event_ts")?,
                    kind: rendered,
                }),
                // A newer server's kind, or a row this build cannot read:
                // the rest of the replay is still worth sending.
                Err(why) => {
                    tracing::warn!(room_id, seq, kind, why = %why, "event not replayed: cannot render it")
                }
            }
        }
        Ok(events)
    }

    async fn around(
        &self,
        room_id: i64,
        message_id: i64,
        limit: u32,
    ) -> Result<Option<AroundPage>> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.author_id
             WHERE m.id = ? AND m.room_id = ?"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(message_id)
            .bind(room_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let centre = message(&row)?;
        let before = i64::from(limit / 2);
        let after = (i64::from(limit) - before - 1).max(0);
        // One row more than asked on each side says whether more exist.
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.author_id
             WHERE m.room_id = ? AND m.seq < ? ORDER BY m.seq DESC LIMIT ?"
        );
        let older = sqlx::query(&sql)
            .bind(room_id)
            .bind(centre.seq)
            .bind(before + 1)
            .fetch_all(&mut *tx)
            .await?;
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.author_id
             WHERE m.room_id = ? AND m.seq > ? ORDER BY m.seq LIMIT ?"
        );
        let newer = sqlx::query(&sql)
            .bind(room_id)
            .bind(centre.seq)
            .bind(after + 1)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let has_before = older.len() as i64 > before;
        let has_after = newer.len() as i64 > after;
        let mut messages = Vec::with_capacity(older.len() + newer.len() + 1);
        for row in older.iter().take(before as usize).rev() {
            messages.push(message(row)?);
        }
        messages.push(centre);
        for row in newer.iter().take(after as usize) {
            messages.push(message(row)?);
        }
        Ok(Some(AroundPage {
            messages,
            has_before,
            has_after,
        }))
    }

    async fn range(
        &self,
        room_id: i64,
        after: i64,
        upto: i64,
        limit: u32,
    ) -> Result<Vec<StoredMessage>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.author_id
             WHERE m.room_id = ? AND m.seq > ? AND m.seq <= ? ORDER BY m.seq LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(room_id)
            .bind(after)
            .bind(upto)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(message).collect()
    }
}

#[async_trait]
impl EventTx for SqliteEventTx {
    async fn claim(&mut self, keys: &[(i64, &str)]) -> Result<Vec<Claim>> {
        let c = self.w.conn()?;
        let mut find = c.prepare_cached(
            "SELECT kind, room_id, result FROM commands WHERE user_id = ?1 AND client_id = ?2",
        )?;
        keys.iter()
            .map(|&(user, key)| {
                let done = find
                    .query_row((user, key), |row| {
                        Ok(Claim::Done {
                            kind: row.get(0)?,
                            room_id: row.get(1)?,
                            result: row.get(2)?,
                        })
                    })
                    .optional()?;
                Ok(done.unwrap_or(Claim::New))
            })
            .collect()
    }

    async fn rooms(&mut self, ids: &[i64]) -> Result<Vec<RoomState>> {
        let c = self.w.conn()?;
        let mut find = c.prepare_cached(
            "SELECT kind, name, name_key, topic, last_seq, member_count FROM rooms WHERE id = ?1",
        )?;
        let mut rooms = Vec::with_capacity(ids.len());
        for &id in ids {
            let row = find
                .query_row([id], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        RoomState {
                            id,
                            kind: RoomKind::Public,
                            name: row.get(1)?,
                            name_key: row.get(2)?,
                            topic: row.get(3)?,
                            last_seq: row.get(4)?,
                            member_count: row.get(5)?,
                        },
                    ))
                })
                .optional()?;
            if let Some((kind, room)) = row {
                rooms.push(RoomState {
                    kind: room_kind(&kind)?,
                    ..room
                });
            }
        }
        Ok(rooms)
    }

    async fn standings(&mut self, pairs: &[(i64, i64)]) -> Result<Vec<(i64, i64, Standing)>> {
        let c = self.w.conn()?;
        let mut find = c.prepare_cached(
            "SELECT state, role FROM members WHERE room_id = ?1 AND user_id = ?2",
        )?;
        let mut found = Vec::with_capacity(pairs.len());
        for &(room, user) in pairs {
            let row = find
                .query_row((room, user), |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })
                .optional()?;
            if let Some((state, role)) = row {
                found.push((room, user, standing(&state, &role)?));
            }
        }
        Ok(found)
    }

    async fn names_taken(&mut self, keys: &[&str]) -> Result<Vec<String>> {
        let c = self.w.conn()?;
        let mut find =
            c.prepare_cached("SELECT 1 FROM rooms WHERE kind = 'public' AND name_key = ?1")?;
        let mut taken = Vec::new();
        for &key in keys {
            if find.exists([key])? {
                taken.push(key.to_owned());
            }
        }
        Ok(taken)
    }

    async fn insert_rooms(&mut self, rooms: &[NewRoom<'_>]) -> Result<Vec<i64>> {
        let c = self.w.conn()?;
        let mut insert = c.prepare_cached(
            "INSERT INTO rooms (kind, name, name_key, topic, last_seq, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut ids = Vec::with_capacity(rooms.len());
        for r in rooms {
            insert
                .execute((
                    r.kind.as_str(),
                    r.name,
                    r.name_key,
                    r.topic,
                    r.last_seq,
                    r.created_by,
                    r.ts,
                ))
                .map_err(conflict_or)?;
            ids.push(c.last_insert_rowid());
        }
        Ok(ids)
    }

    /// Advances each room's `seq` counter by its count, rooms in id order;
    /// returns each room's first reserved `seq`. A room that does not exist
    /// is [`StoreError::Missing`].
    ///
    /// The counter is the only source of seqs, never `MAX(seq) + 1`: it is
    /// shared by every event kind and is what several PostgreSQL nodes agree
    /// on.
    async fn reserve_seqs(&mut self, counts: &[(i64, i64)]) -> Result<Vec<(i64, i64)>> {
        let counts: BTreeMap<i64, i64> = counts.iter().copied().collect();
        let c = self.w.conn()?;
        let mut reserve = c.prepare_cached(
            "UPDATE rooms SET last_seq = last_seq + ?1 WHERE id = ?2 RETURNING last_seq",
        )?;
        counts
            .iter()
            .map(|(&id, &n)| {
                let last: i64 = reserve
                    .query_row((n, id), |row| row.get(0))
                    .optional()?
                    .ok_or(StoreError::Missing("room"))?;
                Ok((id, last - n + 1))
            })
            .collect()
    }

    async fn insert_messages(&mut self, rows: &[MessageRow<'_>]) -> Result<Vec<i64>> {
        let c = self.w.conn()?;
        let mut insert = c.prepare_cached(
            "INSERT INTO messages (room_id, seq, author_id, body, client_id, reply_to, mentions, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut ids = Vec::with_capacity(rows.len());
        for m in rows {
            insert.execute((
                m.room_id,
                m.seq,
                m.author_id,
                m.body,
                m.client_id,
                m.reply_to,
                m.mentions,
                m.ts,
            ))?;
            ids.push(c.last_insert_rowid());
        }
        Ok(ids)
    }

    async fn record_mentions(&mut self, rows: &[MessageRow<'_>], ids: &[i64]) -> Result<()> {
        let c = self.w.conn()?;
        let mut note = c.prepare_cached(
            "INSERT OR IGNORE INTO mentions (user_id, room_id, seq, message_id)
             SELECT user_id, room_id, ?1, ?2 FROM members
             WHERE room_id = ?3 AND state = 'joined'
               AND user_id IN (SELECT value FROM json_each(?4))",
        )?;
        let mut count = c.prepare_cached(
            "UPDATE members SET mention_count = mention_count + 1
             WHERE room_id = ?1 AND state = 'joined' AND last_read_seq < ?2
               AND user_id IN (SELECT value FROM json_each(?3))",
        )?;
        for (m, id) in rows.iter().zip(ids) {
            let Some(mentions) = m.mentions else { continue };
            note.execute((m.seq, id, m.room_id, mentions))?;
            count.execute((m.room_id, m.seq, mentions))?;
        }
        Ok(())
    }

    async fn append_events(&mut self, events: &[NewEvent<'_>]) -> Result<()> {
        let c = self.w.conn()?;
        let mut insert = c.prepare_cached(
            "INSERT INTO room_events (room_id, seq, kind, actor_id, target_id, message_id, payload, ts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for e in events {
            insert.execute((
                e.room_id,
                e.seq,
                e.kind,
                e.actor_id,
                e.target_id,
                e.message_id,
                e.payload,
                e.ts,
            ))?;
        }
        self.appended.extend(events.iter().map(|e| AppendedEvent {
            room_id: e.room_id,
            seq: e.seq,
            kind: e.kind.to_owned(),
            actor_id: e.actor_id,
            message_id: e.message_id,
        }));
        Ok(())
    }

    async fn apply_members(&mut self, changes: &[MemberChange]) -> Result<()> {
        // member_count moves only when the row's state really changed.
        let c = self.w.conn()?;
        let mut join = c.prepare_cached(
            "INSERT INTO members (room_id, user_id, state, role, joined_at, last_read_seq)
             VALUES (?1, ?2, 'joined', ?3, ?4, ?5)
             ON CONFLICT (room_id, user_id) DO UPDATE SET
                 state = 'joined', role = excluded.role, joined_at = excluded.joined_at,
                 last_read_seq = excluded.last_read_seq, mention_count = 0
             WHERE members.state <> 'joined'",
        )?;
        let mut leave = c.prepare_cached(
            "DELETE FROM members WHERE room_id = ?1 AND user_id = ?2 AND state = 'joined'",
        )?;
        let mut count =
            c.prepare_cached("UPDATE rooms SET member_count = member_count + ?1 WHERE id = ?2")?;
        for m in changes {
            let (changed, delta) = match m.join {
                Some(role) => (
                    join.execute((m.room_id, m.user_id, role.as_str(), m.ts, m.seq))
                        .map_err(conflict_or)?,
                    1,
                ),
                None => (leave.execute((m.room_id, m.user_id))?, -1),
            };
            if changed > 0 {
                count.execute((delta, m.room_id))?;
            }
        }
        Ok(())
    }

    async fn update_rooms(&mut self, changes: &[RoomChange<'_>]) -> Result<()> {
        let c = self.w.conn()?;
        for r in changes {
            if let Some((name, key)) = r.name {
                c.prepare_cached("UPDATE rooms SET name = ?1, name_key = ?2 WHERE id = ?3")?
                    .execute((name, key, r.room_id))
                    .map_err(conflict_or)?;
            }
            if let Some(topic) = r.topic {
                c.prepare_cached("UPDATE rooms SET topic = ?1 WHERE id = ?2")?
                    .execute((topic, r.room_id))?;
            }
        }
        Ok(())
    }

    async fn mark_read(&mut self, marks: &[(i64, i64, i64)]) -> Result<Vec<ReadState>> {
        let c = self.w.conn()?;
        // Forward only, never past the room's end; mentions at or below the
        // marker no longer count.
        let mut forward = c.prepare_cached(
            "UPDATE members SET
                 last_read_seq = MAX(last_read_seq, MIN(?1, (SELECT last_seq FROM rooms WHERE id = ?2)))
             WHERE room_id = ?2 AND user_id = ?3 AND state = 'joined'
             RETURNING last_read_seq",
        )?;
        let mut mentions = c.prepare_cached(
            "UPDATE members SET mention_count =
                 (SELECT COUNT(*) FROM mentions WHERE user_id = ?1 AND room_id = ?2 AND seq > ?3)
             WHERE room_id = ?2 AND user_id = ?1 RETURNING mention_count",
        )?;
        let mut unread = c.prepare_cached(
            "SELECT COUNT(*) FROM (SELECT 1 FROM messages
             WHERE room_id = ?1 AND seq > ?2 AND author_id != ?3 AND deleted_at IS NULL
             LIMIT 1000)",
        )?;
        let mut states = Vec::with_capacity(marks.len());
        for &(room, user, seq) in marks {
            let marker: Option<i64> = forward
                .query_row((seq, room, user), |row| row.get(0))
                .optional()?;
            let Some(last_read_seq) = marker else {
                continue;
            };
            let mention_count: i64 =
                mentions.query_row((user, room, last_read_seq), |row| row.get(0))?;
            let unread: i64 = unread.query_row((room, last_read_seq, user), |row| row.get(0))?;
            states.push(ReadState {
                room_id: room,
                user_id: user,
                last_read_seq,
                unread,
                mention_count,
            });
        }
        Ok(states)
    }

    async fn record(&mut self, done: &[Done<'_>]) -> Result<()> {
        let c = self.w.conn()?;
        let mut insert = c.prepare_cached(
            "INSERT INTO commands (user_id, client_id, kind, room_id, result, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for d in done {
            insert.execute((d.user_id, d.client_id, d.kind, d.room_id, d.result, d.ts))?;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        let c = self.w.conn()?;
        for hook in self.hooks.iter() {
            // On error the Writer is dropped unmarked: closed, rolled back.
            hook.before_commit(c, &self.appended)
                .map_err(|err| StoreError::Hook(err.to_string()))?;
        }
        c.prepare_cached("COMMIT")?.execute([])?;
        self.w.ok();
        Ok(())
    }
}
