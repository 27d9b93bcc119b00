-- Users: guests now; accounts and identities join later.
CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL DEFAULT 'guest',
    created_at  INTEGER NOT NULL
);

-- Server-side sessions. Only a SHA-256 of the cookie's token is stored, so a
-- copy of the database does not let anyone sign in.
CREATE TABLE sessions (
    token_hash  BLOB    PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_expiry ON sessions(expires_at);

-- Rooms. `name_key` is the case-folded name (folded in Rust, so it covers
-- all of Unicode, not SQLite's ASCII-only NOCASE) and carries uniqueness.
CREATE TABLE rooms (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    name_key    TEXT    NOT NULL UNIQUE,
    created_by  INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at  INTEGER NOT NULL
);

-- Messages. `seq` is the per-room order, assigned inside the committing
-- transaction; `client_id` makes sends idempotent per room.
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY,
    room_id     INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    author_id   INTEGER NOT NULL REFERENCES users(id),
    body        TEXT    NOT NULL,
    client_id   TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (room_id, seq),
    UNIQUE (room_id, client_id)
);

INSERT INTO rooms (name, name_key, created_by, created_at)
VALUES ('general', 'general', NULL, CAST(strftime('%s', 'now') AS INTEGER) * 1000);
