//! [`Events`] on SQLite: the committing transaction, and history and
//! replay read back from the messages it wrote.
//!
//! A batch costs a fixed number of statements whatever its size (plan v2
//! §1, "Writing and reading it"): one lookup of the commands it repeats, one
//! `UPDATE rooms … RETURNING` reserving every room's seqs, then one
//! multi-row insert each into `messages`, `room_events` and `commands`, each
//! split only when it would exceed SQLite's limit on bound values.

use super::{SqliteHook, SqliteStore, Writer, MAX_VARIABLES};
use crate::chat::policy::Standing;
use crate::store::{
    AppendedEvent, Claim, Committed, Done, EventTx, Events, HistoryPage, MemberChange, MemberState,
    MessageRow, NewEvent, NewMessage, NewRoom, Original, ReadState, Result, Role as StoredRole,
    RoomChange, RoomState, StoreError, StoredMessage,
};
use app::protocol::{Role, RoomKind, UserInfo};
use async_trait::async_trait;
use sqlx::{Row, SqliteConnection};
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

/// No author email: messages are shown to everyone.
const MESSAGE_COLUMNS: &str = "m.id, m.seq, m.author_id, u.name AS author_name, \
     u.picture AS author_picture, m.body, m.client_id, m.created_at";

/// A message from a row of [`MESSAGE_COLUMNS`].
fn message(row: &sqlx::sqlite::SqliteRow) -> Result<StoredMessage> {
    Ok(StoredMessage {
        id: row.try_get("id")?,
        seq: row.try_get("seq")?,
        author: UserInfo {
            id: row.try_get("author_id")?,
            name: row.try_get("author_name")?,
            picture: row.try_get("author_picture")?,
        },
        body: row.try_get("body")?,
        client_id: row.try_get("client_id")?,
        ts: row.try_get("created_at")?,
    })
}

/// `rows` copies of `row` (a parenthesised list of placeholders), for a
/// multi-row `VALUES`.
fn values(row: &str, rows: usize) -> String {
    vec![row; rows].join(", ")
}

/// How many rows of `per_row` bound values fit in one statement.
fn rows_per_statement(per_row: usize) -> usize {
    MAX_VARIABLES / per_row
}

/// The answer a processed post keeps in `commands.result` (the same JSON
/// object migration 0004 writes for v1's messages).
fn post_result(room_id: i64, seq: i64, message_id: i64, ts: i64) -> String {
    format!(r#"{{"room_id":{room_id},"seq":{seq},"message_id":{message_id},"ts":{ts}}}"#)
}

/// A post of the batch that is stored now.
struct NewRow {
    /// Its place in the batch.
    at: usize,
    seq: i64,
    id: i64,
}

/// What the batch does with one of its rows.
enum Plan {
    /// Repeats a command processed in an earlier batch.
    Known(Committed),
    /// Repeats the row at this place earlier in the batch.
    Repeat(usize),
    /// Stored now: index into the new rows.
    New(usize),
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

impl SqliteStore {
    async fn begin_tx(&self) -> Result<SqliteEventTx> {
        let mut w = self.writer().await?;
        // BEGIN IMMEDIATE takes the write lock up front, so the transaction
        // never has to upgrade a read lock (which SQLite may refuse with BUSY).
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *w).await?;
        Ok(SqliteEventTx {
            w,
            hooks: self.hooks.clone(),
            appended: Vec::new(),
        })
    }
}

#[async_trait]
impl Events for SqliteStore {
    async fn begin(&self) -> Result<Box<dyn EventTx>> {
        Ok(Box::new(self.begin_tx().await?))
    }

    async fn commit_posts(&self, batch: &[NewMessage<'_>]) -> Result<Vec<Committed>> {
        let mut tx = self.begin_tx().await?;
        let results = commit_posts(&mut tx, batch).await?;
        Box::new(tx).commit().await?;
        Ok(results)
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

    async fn replay(
        &self,
        _room_id: i64,
        _after: i64,
        _limit: u32,
    ) -> Result<Vec<app::protocol::Event>> {
        todo!("S7a: replay")
    }

    async fn around(
        &self,
        _room_id: i64,
        _message_id: i64,
        _limit: u32,
    ) -> Result<Option<crate::store::AroundPage>> {
        todo!("S7a: around")
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

/// The batch's writes, in the caller's transaction; results in batch order.
async fn commit_posts(tx: &mut SqliteEventTx, batch: &[NewMessage<'_>]) -> Result<Vec<Committed>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let conn = &mut *tx.w;
    // The first place in the batch of each (author, client_id).
    let mut first: HashMap<(i64, &str), usize> = HashMap::with_capacity(batch.len());
    for (at, m) in batch.iter().enumerate() {
        first.entry((m.author_id, m.client_id)).or_insert(at);
    }
    let firsts: Vec<usize> = (0..batch.len())
        .filter(|&at| first[&(batch[at].author_id, batch[at].client_id)] == at)
        .collect();
    let mut known = processed(conn, batch, &firsts).await?;

    let mut plan = Vec::with_capacity(batch.len());
    let mut new_rows = Vec::new();
    // Posts per room, in id order: the order rooms are locked in.
    let mut counts: BTreeMap<i64, i64> = BTreeMap::new();
    for (at, m) in batch.iter().enumerate() {
        let first = first[&(m.author_id, m.client_id)];
        if first != at {
            plan.push(Plan::Repeat(first));
        } else if let Some(original) = known.remove(&at) {
            plan.push(Plan::Known(original));
        } else {
            *counts.entry(m.room_id).or_default() += 1;
            plan.push(Plan::New(new_rows.len()));
            new_rows.push(NewRow { at, seq: 0, id: 0 });
        }
    }

    let reserved = reserve_seqs(conn, &counts).await?;
    let mut next: HashMap<i64, i64> = reserved.iter().map(|(&id, r)| (id, r.0)).collect();
    for row in &mut new_rows {
        let seq = next
            .get_mut(&batch[row.at].room_id)
            .ok_or(StoreError::Missing("room"))?;
        row.seq = *seq;
        *seq += 1;
    }
    insert_messages(conn, batch, &mut new_rows).await?;
    insert_posted(conn, batch, &new_rows).await?;
    insert_commands(conn, batch, &new_rows).await?;
    tx.appended.extend(new_rows.iter().map(|row| AppendedEvent {
        room_id: batch[row.at].room_id,
        seq: row.seq,
        kind: "posted".into(),
        actor_id: Some(batch[row.at].author_id),
        message_id: Some(row.id),
    }));

    let mut results: Vec<Committed> = Vec::with_capacity(batch.len());
    for (at, step) in plan.into_iter().enumerate() {
        let committed = match step {
            Plan::Known(original) => original,
            Plan::New(i) => Committed {
                id: new_rows[i].id,
                seq: new_rows[i].seq,
                ts: batch[at].ts,
                duplicate: None,
            },
            // The first is earlier in the batch, so its result is known.
            Plan::Repeat(first) => {
                let earlier = results[first].clone();
                let original = match earlier.duplicate {
                    Some(original) => original,
                    None => {
                        let room_id = batch[first].room_id;
                        let (_, room) =
                            reserved.get(&room_id).ok_or(StoreError::Missing("room"))?;
                        Original {
                            room_id,
                            room: room.clone(),
                            body: batch[first].body.to_owned(),
                        }
                    }
                };
                Committed {
                    duplicate: Some(original),
                    ..earlier
                }
            }
        };
        results.push(committed);
    }
    Ok(results)
}

/// The commands of `batch` (at the places `firsts`) that were processed
/// before, by place: the original message each repeats.
///
/// The lookup joins a `VALUES` list, which SQLite answers with one primary
/// key search per row; `(user_id, client_id) IN (VALUES …)` would scan the
/// whole table.
async fn processed(
    conn: &mut SqliteConnection,
    batch: &[NewMessage<'_>],
    firsts: &[usize],
) -> Result<HashMap<usize, Committed>> {
    let mut known = HashMap::new();
    for chunk in firsts.chunks(rows_per_statement(3)) {
        let sql = format!(
            "SELECT v.column1 AS at, c.kind, c.room_id, r.name AS room, m.body,
                    c.result ->> '$.message_id' AS message_id,
                    c.result ->> '$.seq' AS seq, c.result ->> '$.ts' AS ts
             FROM (VALUES {}) AS v
             JOIN commands c ON c.user_id = v.column2 AND c.client_id = v.column3
             LEFT JOIN messages m ON m.id = c.result ->> '$.message_id'
             LEFT JOIN rooms r ON r.id = c.room_id",
            values("(?, ?, ?)", chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for &at in chunk {
            query = query
                .bind(at as i64)
                .bind(batch[at].author_id)
                .bind(batch[at].client_id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            // Only posts exist under the v1 wire. A client_id spent on
            // another kind of command refuses the row: the committer's
            // row-by-row retry keeps it from failing the others.
            if row.try_get::<String, _>("kind")? != "post" {
                return Err(StoreError::Conflict);
            }
            // The original may be gone with its room.
            let (Some(room), Some(body)) = (
                row.try_get::<Option<String>, _>("room")?,
                row.try_get::<Option<String>, _>("body")?,
            ) else {
                return Err(StoreError::Missing("message"));
            };
            let at: i64 = row.try_get("at")?;
            known.insert(
                at as usize,
                Committed {
                    id: row.try_get("message_id")?,
                    seq: row.try_get("seq")?,
                    ts: row.try_get("ts")?,
                    duplicate: Some(Original {
                        room_id: row.try_get("room_id")?,
                        room,
                        body,
                    }),
                },
            );
        }
    }
    Ok(known)
}

/// Advances each room's `seq` counter by its count, in one statement (per
/// chunk), rooms in id order; returns each room's first reserved `seq` and
/// its name. A room that does not exist is [`StoreError::Missing`].
///
/// The counter is the only source of seqs, never `MAX(seq) + 1`: it is
/// shared by every event kind and is what several PostgreSQL nodes agree on.
async fn reserve_seqs(
    conn: &mut SqliteConnection,
    counts: &BTreeMap<i64, i64>,
) -> Result<HashMap<i64, (i64, String)>> {
    let mut reserved = HashMap::with_capacity(counts.len());
    let rooms: Vec<(i64, i64)> = counts.iter().map(|(&id, &n)| (id, n)).collect();
    for chunk in rooms.chunks(rows_per_statement(2)) {
        let sql = format!(
            "UPDATE rooms SET last_seq = last_seq + v.column2 FROM (VALUES {}) AS v
             WHERE rooms.id = v.column1 RETURNING rooms.id, rooms.last_seq, rooms.name",
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
            let name: Option<String> = row.try_get("name")?;
            let first = last - counts.get(&id).copied().unwrap_or(0) + 1;
            reserved.insert(id, (first, name.unwrap_or_default()));
        }
    }
    if reserved.len() < counts.len() {
        return Err(StoreError::Missing("room"));
    }
    Ok(reserved)
}

/// Inserts the new messages and records their ids in `rows`.
async fn insert_messages(
    conn: &mut SqliteConnection,
    batch: &[NewMessage<'_>],
    rows: &mut [NewRow],
) -> Result<()> {
    let mut ids: HashMap<(i64, i64), i64> = HashMap::with_capacity(rows.len());
    for chunk in rows.chunks(rows_per_statement(6)) {
        let sql = format!(
            "INSERT INTO messages (room_id, seq, author_id, body, client_id, created_at)
             VALUES {} RETURNING id, room_id, seq",
            values("(?, ?, ?, ?, ?, ?)", chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            let m = &batch[row.at];
            query = query
                .bind(m.room_id)
                .bind(row.seq)
                .bind(m.author_id)
                .bind(m.body)
                .bind(m.client_id)
                .bind(m.ts);
        }
        // RETURNING order is unspecified: map by (room, seq), which is unique.
        for row in query.fetch_all(&mut *conn).await? {
            ids.insert(
                (row.try_get("room_id")?, row.try_get("seq")?),
                row.try_get("id")?,
            );
        }
    }
    for row in rows.iter_mut() {
        row.id = *ids
            .get(&(batch[row.at].room_id, row.seq))
            .ok_or(StoreError::Missing("message"))?;
    }
    Ok(())
}

/// Inserts a `posted` event per new message. It references the message and
/// never copies its text.
async fn insert_posted(
    conn: &mut SqliteConnection,
    batch: &[NewMessage<'_>],
    rows: &[NewRow],
) -> Result<()> {
    for chunk in rows.chunks(rows_per_statement(5)) {
        let sql = format!(
            "INSERT INTO room_events (room_id, seq, kind, actor_id, message_id, ts) VALUES {}",
            values("(?, ?, 'posted', ?, ?, ?)", chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            let m = &batch[row.at];
            query = query
                .bind(m.room_id)
                .bind(row.seq)
                .bind(m.author_id)
                .bind(row.id)
                .bind(m.ts);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Records each new post as processed under (author, `client_id`), with the
/// answer a repeat gets.
async fn insert_commands(
    conn: &mut SqliteConnection,
    batch: &[NewMessage<'_>],
    rows: &[NewRow],
) -> Result<()> {
    for chunk in rows.chunks(rows_per_statement(5)) {
        let sql = format!(
            "INSERT INTO commands (user_id, client_id, kind, room_id, result, created_at) VALUES {}",
            values("(?, ?, 'post', ?, ?, ?)", chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            let m = &batch[row.at];
            query = query
                .bind(m.author_id)
                .bind(m.client_id)
                .bind(m.room_id)
                .bind(post_result(m.room_id, row.seq, row.id, m.ts))
                .bind(m.ts);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The standing a membership row gives.
fn standing(state: &str, role: &str) -> Result<Standing> {
    let role = match StoredRole::parse(role) {
        Some(StoredRole::Owner) => Role::Owner,
        Some(StoredRole::Moderator) => Role::Moderator,
        Some(StoredRole::Member) => Role::Member,
        None => return Err(StoreError::Missing("member role")),
    };
    Ok(match MemberState::parse(state) {
        Some(MemberState::Joined) => Standing::Member(role),
        Some(MemberState::Invited) => Standing::Invited,
        Some(MemberState::Banned) => Standing::Banned,
        None => return Err(StoreError::Missing("member state")),
    })
}

fn room_kind(kind: &str) -> Result<RoomKind> {
    [RoomKind::Public, RoomKind::Private, RoomKind::Dm]
        .into_iter()
        .find(|k| k.as_str() == kind)
        .ok_or(StoreError::Missing("room kind"))
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
        Ok(counts.keys().map(|id| (*id, reserved[id].0)).collect())
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
        rows.iter()
            .map(|m| {
                ids.get(&(m.room_id, m.seq))
                    .copied()
                    .ok_or(StoreError::Missing("message"))
            })
            .collect()
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
