-- Accounts: local (email + password) and linked OpenID Connect identities.
-- `users.kind` is 'guest', 'local' or 'oidc'.

-- What others see besides the name: an email and a picture URL.
ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE users ADD COLUMN picture TEXT;

-- Local accounts. `email_key` is the case-folded email and carries
-- uniqueness; `password_hash` is an argon2id PHC string (parameters and salt
-- inside it).
CREATE TABLE local_accounts (
    email_key     TEXT    PRIMARY KEY,
    user_id       INTEGER NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;

-- An identity at an OpenID provider, linked to one user: signing in again
-- with the same (issuer, subject) is the same user, with the same rooms and
-- history.
CREATE TABLE identities (
    issuer        TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at    INTEGER NOT NULL,
    last_login_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, subject)
) WITHOUT ROWID;

-- OpenID sign-ins in progress. Keyed by a hash of `state`, bound to the
-- browser that started it (a hash of its flow cookie), taken (deleted) by the
-- callback so each is used once.
CREATE TABLE oidc_flows (
    state_hash    BLOB    PRIMARY KEY,
    browser_hash  BLOB    NOT NULL,
    provider      TEXT    NOT NULL,
    nonce         TEXT    NOT NULL,
    pkce_verifier TEXT    NOT NULL,
    expires_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX oidc_flows_expiry ON oidc_flows(expires_at);
