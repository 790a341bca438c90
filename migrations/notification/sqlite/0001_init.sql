-- SQLite twin of ../postgres/0001_init.sql (see migrations/user/sqlite for what differs).
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    order_id INTEGER NOT NULL,
    event TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (now())
);
CREATE UNIQUE INDEX notifications_event_id_key ON notifications (event_id);

CREATE INDEX notifications_user_id_created_at_idx ON notifications (user_id, created_at DESC);
