//! [`Events`] on SQLite: the committing transaction, and history, replay
//! and pages around a message read back from what it wrote.
//!
//! A batch costs a fixed number of statements whatever its size (plan v2
//! §1, "Writing and reading it"): one lookup of the commands it repeats, one
//! `UPDATE rooms … RETURNING` reserving every room's seqs, then one
//! multi-row insert each into `messages`, `room_events` and `commands`, each
//! split only when it would exceed SQLite's limit on bound values.

use super::{
    room_kind, rows_per_statement, standing, user_info, values, SqliteHook, SqliteStore, Writer,
};
use crate::chat::policy::Standing;
use crate::store::{
    AppendedEvent, AroundPage, Claim, Done, EventTx, Events, HistoryPage, MemberChange, MessageRow,
    NewEvent, NewRoom, ReadState, Result, RoomChange, RoomState, StoreError, StoredMessage,
};
use app::protocol::{Event, EventKind, Role, UserInfo};
use async_trait::async_trait;
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
/// The transaction is opened with a plain statement rather than sqlx's
/// `Transaction`, which would borrow the connection it is also handed back
/// in. Dropped without [`EventTx::commit`] (an error, a hook's refusal, a
/// cancelled task), its [`Writer`] is closed, not reused, and SQLite rolls
/// the transaction back with the connection.
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
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *w).await?;
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

/// Advances each room's `seq` counter by its count, in one statement (per
/// chunk), rooms in id order; returns each room's first reserved `seq`. A
/// room that does not exist is [`StoreError::Missing`].
///
/// The counter is the only source of seqs, never `MAX(seq) + 1`: it is
/// shared by every event kind and is what several PostgreSQL nodes agree on.
async fn reserve_seqs(
    conn: &mut SqliteConnection,
    counts: &BTreeMap<i64, i64>,
) -> Result<HashMap<i64, i64>> {
    let mut reserved = HashMap::with_capacity(counts.len());
    let rooms: Vec<(i64, i64)> = counts.iter().map(|(&id, &n)| (id, n)).collect();
    for chunk in rooms.chunks(rows_per_statement(2)) {
        let sql = format!(
            "UPDATE rooms SET last_seq = last_seq + v.column2 FROM (VALUES {}) AS v
             WHERE rooms.id = v.column1 RETURNING rooms.id, rooms.last_seq",
            values("(?, ?)", chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for &(id, n) in chunk {
            query = query.bind(id).bind(n);
        }
        // RETURNING order is unspecified: map by id.
        for row in query.fetch_all(&mut *conn).await? {
            let id: i64 = row.try_get("id")?;
            let last: i64 = row.try_get("last_seq")?;
            let first = last - counts.get(&id).copied().unwrap_or(0) + 1;
            reserved.insert(id, first);
        }
    }
    if reserved.len() < counts.len() {
        return Err(StoreError::Missing("room"));
    }
    Ok(reserved)
}

#[async_trait]
impl EventTx for SqliteEventTx {
    async fn claim(&mut self, keys: &[(i64, &str)]) -> Result<Vec<Claim>> {
        let mut claims = vec![Claim::New; keys.len()];
        for (c, chunk) in keys.chunks(rows_per_statement(3)).enumerate() {
            let base = c * rows_per_statement(3);
            // A VALUES join: one primary-key search per key (see `processed`).
            let sql = format!(
                "SELECT v.column1 AS at, c.kind, c.room_id, c.result
                 FROM (VALUES {}) AS v
                 JOIN commands c ON c.user_id = v.column2 AND c.client_id = v.column3",
                values("(?, ?, ?)", chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for (i, &(user, key)) in chunk.iter().enumerate() {
                query = query.bind((base + i) as i64).bind(user).bind(key);
            }
            for row in query.fetch_all(&mut *self.w).await? {
                let at: i64 = row.try_get("at")?;
                claims[at as usize] = Claim::Done {
                    kind: row.try_get("kind")?,
                    room_id: row.try_get("room_id")?,
                    result: row.try_get("result")?,
                };
            }
        }
        Ok(claims)
    }

    async fn rooms(&mut self, ids: &[i64]) -> Result<Vec<RoomState>> {
        let mut rooms = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(rows_per_statement(1)) {
            let sql = format!(
                "SELECT id, kind, name, name_key, topic, last_seq, member_count FROM rooms
                 WHERE id IN ({}) ORDER BY id",
                vec!["?"; chunk.len()].join(", ")
            );
            let mut query = sqlx::query(&sql);
            for &id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&mut *self.w).await? {
                rooms.push(RoomState {
                    id: row.try_get("id")?,
                    kind: room_kind(row.try_get("kind")?)?,
                    name: row.try_get("name")?,
                    name_key: row.try_get("name_key")?,
                    topic: row.try_get("topic")?,
                    last_seq: row.try_get("last_seq")?,
                    member_count: row.try_get("member_count")?,
                });
            }
        }
        Ok(rooms)
    }

    async fn standings(&mut self, pairs: &[(i64, i64)]) -> Result<Vec<(i64, i64, Standing)>> {
        let mut found = Vec::with_capacity(pairs.len());
        for chunk in pairs.chunks(rows_per_statement(2)) {
            let sql = format!(
                "SELECT m.room_id, m.user_id, m.state, m.role FROM (VALUES {}) AS v
                 JOIN members m ON m.room_id = v.column1 AND m.user_id = v.column2",
                values("(?, ?)", chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for &(room, user) in chunk {
                query = query.bind(room).bind(user);
            }
            for row in query.fetch_all(&mut *self.w).await? {
                found.push((
                    row.try_get("room_id")?,
                    row.try_get("user_id")?,
                    standing(row.try_get("state")?, row.try_get("role")?)?,
                ));
            }
        }
        Ok(found)
    }

    async fn names_taken(&mut self, keys: &[&str]) -> Result<Vec<String>> {
        let mut taken = Vec::new();
        for chunk in keys.chunks(rows_per_statement(1)) {
            let sql = format!(
                "SELECT name_key FROM rooms WHERE kind = 'public' AND name_key IN ({})",
                vec!["?"; chunk.len()].join(", ")
            );
            let mut query = sqlx::query(&sql);
            for &key in chunk {
                query = query.bind(key);
            }
            for row in query.fetch_all(&mut *self.w).await? {
                taken.push(row.try_get("name_key")?);
            }
        }
        Ok(taken)
    }

    async fn insert_rooms(&mut self, rooms: &[NewRoom<'_>]) -> Result<Vec<i64>> {
        // Creations are rare (and rate-limited): one statement each.
        let mut ids = Vec::with_capacity(rooms.len());
        for r in rooms {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO rooms (kind, name, name_key, topic, last_seq, created_by, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(r.kind.as_str())
            .bind(r.name)
            .bind(r.name_key)
            .bind(r.topic)
            .bind(r.last_seq)
            .bind(r.created_by)
            .bind(r.ts)
            .fetch_one(&mut *self.w)
            .await
            .map_err(super::conflict_or)?;
            ids.push(id);
        }
        Ok(ids)
    }

    async fn reserve_seqs(&mut self, counts: &[(i64, i64)]) -> Result<Vec<(i64, i64)>> {
        let counts: BTreeMap<i64, i64> = counts.iter().copied().collect();
        let reserved = reserve_seqs(&mut self.w, &counts).await?;
        counts
            .keys()
            .map(|id| {
                let first = reserved.get(id).ok_or(StoreError::Missing("room"))?;
                Ok((*id, *first))
            })
            .collect()
    }

    async fn insert_messages(&mut self, rows: &[MessageRow<'_>]) -> Result<Vec<i64>> {
        let mut ids: HashMap<(i64, i64), i64> = HashMap::with_capacity(rows.len());
        for chunk in rows.chunks(rows_per_statement(8)) {
            let sql = format!(
                "INSERT INTO messages (room_id, seq, author_id, body, client_id, reply_to, mentions, created_at)
                 VALUES {} RETURNING id, room_id, seq",
                values("(?, ?, ?, ?, ?, ?, ?, ?)", chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for m in chunk {
                query = query
                    .bind(m.room_id)
                    .bind(m.seq)
                    .bind(m.author_id)
                    .bind(m.body)
                    .bind(m.client_id)
                    .bind(m.reply_to)
                    .bind(m.mentions)
                    .bind(m.ts);
            }
            // RETURNING order is unspecified: map by (room, seq), which is unique.
            for row in query.fetch_all(&mut *self.w).await? {
                ids.insert(
                    (row.try_get("room_id")?, row.try_get("seq")?),
                    row.try_get("id")?,
                );
            }
        }
        let ids: Vec<i64> = rows
            .iter()
            .map(|m| {
                ids.get(&(m.room_id, m.seq))
                    .copied()
                    .ok_or(StoreError::Missing("message"))
            })
            .collect::<Result<_>>()?;
        Ok(ids)
    }

    async fn record_mentions(&mut self, rows: &[MessageRow<'_>], ids: &[i64]) -> Result<()> {
        // Mentions are rare: two statements per message that has any.
        for (m, id) in rows.iter().zip(ids) {
            let Some(mentions) = m.mentions else { continue };
            sqlx::query(
                "INSERT OR IGNORE INTO mentions (user_id, room_id, seq, message_id)
                 SELECT user_id, room_id, ?, ? FROM members
                 WHERE room_id = ? AND state = 'joined'
                   AND user_id IN (SELECT value FROM json_each(?))",
            )
            .bind(m.seq)
            .bind(id)
            .bind(m.room_id)
            .bind(mentions)
            .execute(&mut *self.w)
            .await?;
            sqlx::query(
                "UPDATE members SET mention_count = mention_count + 1
                 WHERE room_id = ? AND state = 'joined' AND last_read_seq < ?
                   AND user_id IN (SELECT value FROM json_each(?))",
            )
            .bind(m.room_id)
            .bind(m.seq)
            .bind(mentions)
            .execute(&mut *self.w)
            .await?;
        }
        Ok(())
    }

    async fn append_events(&mut self, events: &[NewEvent<'_>]) -> Result<()> {
        for chunk in events.chunks(rows_per_statement(8)) {
            let sql = format!(
                "INSERT INTO room_events (room_id, seq, kind, actor_id, target_id, message_id, payload, ts)
                 VALUES {}",
                values("(?, ?, ?, ?, ?, ?, ?, ?)", chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for e in chunk {
                query = query
                    .bind(e.room_id)
                    .bind(e.seq)
                    .bind(e.kind)
                    .bind(e.actor_id)
                    .bind(e.target_id)
                    .bind(e.message_id)
                    .bind(e.payload)
                    .bind(e.ts);
            }
            query.execute(&mut *self.w).await?;
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
        // Joins and leaves are rare next to posts: one statement each, with
        // member_count moved only when the row's state really changed.
        for c in changes {
            let changed = match c.join {
                Some(role) => sqlx::query(
                    "INSERT INTO members (room_id, user_id, state, role, joined_at, last_read_seq)
                     VALUES (?, ?, 'joined', ?, ?, ?)
                     ON CONFLICT (room_id, user_id) DO UPDATE SET
                         state = 'joined', role = excluded.role, joined_at = excluded.joined_at,
                         last_read_seq = excluded.last_read_seq, mention_count = 0
                     WHERE members.state <> 'joined'",
                )
                .bind(c.room_id)
                .bind(c.user_id)
                .bind(role.as_str())
                .bind(c.ts)
                .bind(c.seq)
                .execute(&mut *self.w)
                .await
                .map_err(super::conflict_or)?
                .rows_affected(),
                None => sqlx::query(
                    "DELETE FROM members WHERE room_id = ? AND user_id = ? AND state = 'joined'",
                )
                .bind(c.room_id)
                .bind(c.user_id)
                .execute(&mut *self.w)
                .await?
                .rows_affected(),
            };
            if changed > 0 {
                let delta: i64 = if c.join.is_some() { 1 } else { -1 };
                sqlx::query("UPDATE rooms SET member_count = member_count + ? WHERE id = ?")
                    .bind(delta)
                    .bind(c.room_id)
                    .execute(&mut *self.w)
                    .await?;
            }
        }
        Ok(())
    }

    async fn update_rooms(&mut self, changes: &[RoomChange<'_>]) -> Result<()> {
        for c in changes {
            if let Some((name, key)) = c.name {
                sqlx::query("UPDATE rooms SET name = ?, name_key = ? WHERE id = ?")
                    .bind(name)
                    .bind(key)
                    .bind(c.room_id)
                    .execute(&mut *self.w)
                    .await
                    .map_err(super::conflict_or)?;
            }
            if let Some(topic) = c.topic {
                sqlx::query("UPDATE rooms SET topic = ? WHERE id = ?")
                    .bind(topic)
                    .bind(c.room_id)
                    .execute(&mut *self.w)
                    .await?;
            }
        }
        Ok(())
    }

    async fn mark_read(&mut self, marks: &[(i64, i64, i64)]) -> Result<Vec<ReadState>> {
        let mut states = Vec::with_capacity(marks.len());
        for &(room, user, seq) in marks {
            // Forward only, never past the room's end; mentions at or below
            // the marker no longer count.
            let row = sqlx::query(
                "UPDATE members SET
                     last_read_seq = MAX(last_read_seq, MIN(?, (SELECT last_seq FROM rooms WHERE id = ?)))
                 WHERE room_id = ? AND user_id = ? AND state = 'joined'
                 RETURNING last_read_seq",
            )
            .bind(seq)
            .bind(room)
            .bind(room)
            .bind(user)
            .fetch_optional(&mut *self.w)
            .await?;
            let Some(row) = row else { continue };
            let last_read_seq: i64 = row.try_get("last_read_seq")?;
            let mention_count: i64 = sqlx::query_scalar(
                "UPDATE members SET mention_count =
                     (SELECT COUNT(*) FROM mentions WHERE user_id = ? AND room_id = ? AND seq > ?)
                 WHERE room_id = ? AND user_id = ? RETURNING mention_count",
            )
            .bind(user)
            .bind(room)
            .bind(last_read_seq)
            .bind(room)
            .bind(user)
            .fetch_one(&mut *self.w)
            .await?;
            let unread: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT 1 FROM messages
                 WHERE room_id = ? AND seq > ? AND author_id != ? AND deleted_at IS NULL
                 LIMIT 1000)",
            )
            .bind(room)
            .bind(last_read_seq)
            .bind(user)
            .fetch_one(&mut *self.w)
            .await?;
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
        for chunk in done.chunks(rows_per_statement(6)) {
            let sql = format!(
                "INSERT INTO commands (user_id, client_id, kind, room_id, result, created_at) VALUES {}",
                values("(?, ?, ?, ?, ?, ?)", chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for d in chunk {
                query = query
                    .bind(d.user_id)
                    .bind(d.client_id)
                    .bind(d.kind)
                    .bind(d.room_id)
                    .bind(d.result)
                    .bind(d.ts);
            }
            query.execute(&mut *self.w).await?;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        let hooks = self.hooks.clone();
        for hook in hooks.iter() {
            // On error the Writer is dropped unmarked: closed, rolled back.
            hook.before_commit(&mut self.w, &self.appended)
                .await
                .map_err(|err| StoreError::Hook(err.to_string()))?;
        }
        sqlx::query("COMMIT").execute(&mut *self.w).await?;
        self.w.ok();
        Ok(())
    }
}
