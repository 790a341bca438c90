-- SQLite twin of ../postgres/0001_init.sql (the embedded database). Same tables, columns
-- and constraint names; what differs is SQLite's spelling:
-- - ids: INTEGER PRIMARY KEY AUTOINCREMENT (never reused, like BIGSERIAL);
-- - timestamps: TIMESTAMP columns holding the host's fixed-width UTC text, `now()` is the
--   host's function;
-- - a named unique constraint is a named unique index (SQLite reports violations by
--   column; the host names them after the index).
CREATE TABLE users (
    id              INTEGER   PRIMARY KEY AUTOINCREMENT,
    username        TEXT      NOT NULL,
    hashed_password TEXT      NOT NULL,
    is_active       BOOLEAN   NOT NULL DEFAULT TRUE,
    created_at      TIMESTAMP NOT NULL DEFAULT (now()),
    updated_at      TIMESTAMP NOT NULL DEFAULT (now())
);
CREATE UNIQUE INDEX users_username_key ON users (username);
