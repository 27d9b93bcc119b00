-- v2 model: rooms by id with a kind and a seq counter, persistent membership,
-- one event log per room (events reference messages, never copy their text),
-- messages as current state, processed commands for idempotency.
-- Runs in sqlx's migration transaction with foreign_keys=ON: referenced tables
-- are renamed (references follow) and copied, never dropped while referenced.
-- rooms.id and messages.id are AUTOINCREMENT, as PostgreSQL identities are:
-- a deleted room's or message's id is never handed out again. Copying the v1
-- rows with their ids sets sqlite_sequence to each table's largest id.

ALTER TABLE messages RENAME TO messages_v1;
ALTER TABLE rooms RENAME TO rooms_v1;          -- messages_v1.room_id now points here

CREATE TABLE rooms (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: /r/<id> keeps its meaning
    kind         TEXT    NOT NULL CHECK (kind IN ('public', 'private', 'dm')),
    name         TEXT,                           -- NULL only for dm
    name_key     TEXT,                           -- room_key(name) folded in Rust; NULL for dm
    topic        TEXT    NOT NULL DEFAULT '',
    last_seq     INTEGER NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    member_count INTEGER NOT NULL DEFAULT 0 CHECK (member_count >= 0),  -- state='joined', kept in the committing tx
    auto_join    INTEGER NOT NULL DEFAULT 0 CHECK (auto_join IN (0, 1)), -- new users join silently (general)
    dm_key       TEXT    UNIQUE,                 -- sorted member ids '3,17' (dm only; issue 12)
    created_by   INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at   INTEGER NOT NULL,
    CHECK ((kind = 'dm') = (name IS NULL)),
    CHECK ((name IS NULL) = (name_key IS NULL)),
    CHECK ((kind = 'dm') = (dm_key IS NOT NULL))
);
-- Unique among public rooms only; also the directory's keyset index (name_key is unique there).
CREATE UNIQUE INDEX rooms_public_name ON rooms(name_key) WHERE kind = 'public';

INSERT INTO rooms (id, kind, name, name_key, last_seq, auto_join, created_by, created_at)
SELECT r.id, 'public', r.name, r.name_key,
       COALESCE((SELECT MAX(m.seq) FROM messages_v1 m WHERE m.room_id = r.id), 0),
       r.name_key = 'general', r.created_by, r.created_at
FROM rooms_v1 r;

CREATE TABLE messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused: a stored message id keeps its meaning
    room_id     INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL CHECK (seq > 0),  -- seq of its `posted` event
    author_id   INTEGER NOT NULL REFERENCES users(id),
    body        TEXT    NOT NULL,                  -- '' once deleted (issue 15)
    client_id   TEXT    NOT NULL,
    reply_to    INTEGER REFERENCES messages(id) ON DELETE SET NULL,
    mentions    TEXT,                              -- JSON array of user ids, NULL when none
    created_at  INTEGER NOT NULL,
    edited_at   INTEGER,
    deleted_at  INTEGER,
    UNIQUE (room_id, seq)                          -- history pages, replay joins
);
INSERT INTO messages (id, room_id, seq, author_id, body, client_id, created_at)
SELECT id, room_id, seq, author_id, body, client_id, created_at FROM messages_v1;

CREATE TABLE room_events (
    room_id     INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL CHECK (seq > 0),
    kind        TEXT    NOT NULL,                  -- app::protocol::EventKind name; no CHECK (new kinds need no migration)
    actor_id    INTEGER REFERENCES users(id) ON DELETE SET NULL,  -- NULL: the system
    target_id   INTEGER REFERENCES users(id) ON DELETE SET NULL,  -- the member a membership event is about
    message_id  INTEGER REFERENCES messages(id) ON DELETE SET NULL,
    payload     TEXT,                              -- JSON, kind-specific, never message text
    ts          INTEGER NOT NULL,
    PRIMARY KEY (room_id, seq)
) WITHOUT ROWID;
INSERT INTO room_events (room_id, seq, kind, actor_id, message_id, ts)
SELECT room_id, seq, 'posted', author_id, id, created_at FROM messages;

CREATE TABLE members (
    room_id        INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    state          TEXT    NOT NULL DEFAULT 'joined' CHECK (state IN ('joined', 'invited', 'banned')),
    role           TEXT    NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'moderator', 'member')),
    joined_at      INTEGER NOT NULL,               -- when the current state began
    last_read_seq  INTEGER NOT NULL DEFAULT 0 CHECK (last_read_seq >= 0),
    mention_count  INTEGER NOT NULL DEFAULT 0 CHECK (mention_count >= 0),
    muted_until    INTEGER,                        -- issue 12/15
    invited_by     INTEGER REFERENCES users(id) ON DELETE SET NULL,  -- issue 12
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_by_user ON members(user_id, state, room_id);

-- Backfill. Creators own their rooms; everyone who posted in a room is a member
-- (joined at their first post); every user is a member of the auto-join room.
-- Read markers start at the room's end: the upgrade shows nobody a backlog.
INSERT INTO members (room_id, user_id, role, joined_at, last_read_seq)
SELECT id, created_by, 'owner', created_at, last_seq FROM rooms WHERE created_by IS NOT NULL;
INSERT OR IGNORE INTO members (room_id, user_id, role, joined_at, last_read_seq)
SELECT m.room_id, m.author_id, 'member', MIN(m.created_at), r.last_seq
FROM messages m JOIN rooms r ON r.id = m.room_id
GROUP BY m.room_id, m.author_id;
INSERT OR IGNORE INTO members (room_id, user_id, role, joined_at, last_read_seq)
SELECT r.id, u.id, 'member', u.created_at, r.last_seq FROM users u JOIN rooms r ON r.auto_join = 1;
UPDATE rooms SET member_count =
    (SELECT COUNT(*) FROM members m WHERE m.room_id = rooms.id AND m.state = 'joined');

-- Who is mentioned where (mention_count is recomputed from it when a marker moves).
CREATE TABLE mentions (
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    room_id     INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    message_id  INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, room_id, seq)
) WITHOUT ROWID;

-- Processed commands: a repeat of (user, client_id) gets `result` again.
CREATE TABLE commands (
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id   TEXT    NOT NULL,                  -- canonical lower-case hyphenated UUID
    kind        TEXT    NOT NULL,                  -- post, create_room, join, leave, rename, set_topic, ...
    room_id     INTEGER,                           -- the room it acted on / created
    result      TEXT,                              -- JSON answer; NULL while claimed (PostgreSQL)
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id)
) WITHOUT ROWID;
CREATE INDEX commands_age ON commands(created_at);
-- v1 allowed one author to reuse a client_id in two rooms: the first one wins.
INSERT OR IGNORE INTO commands (user_id, client_id, kind, room_id, result, created_at)
SELECT author_id, client_id, 'post', room_id,
       json_object('room_id', room_id, 'seq', seq, 'message_id', id, 'ts', created_at), created_at
FROM messages ORDER BY id;

DROP TABLE messages_v1;   -- nothing references it: no cascade
DROP TABLE rooms_v1;      -- its only child (messages_v1) is gone
