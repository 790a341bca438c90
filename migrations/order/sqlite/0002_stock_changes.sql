-- SQLite twin of ../postgres/0002_stock_changes.sql.
ALTER TABLE orders ADD COLUMN reservation_id TEXT NULL;

CREATE TABLE stock_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL,
    action TEXT NOT NULL,
    product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    caller_authorization TEXT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (now()),
    CONSTRAINT stock_changes_action_check CHECK (action IN ('reserve', 'release'))
);

CREATE UNIQUE INDEX stock_changes_key_action_key ON stock_changes (idempotency_key, action);
CREATE INDEX stock_changes_created_at_idx ON stock_changes (created_at);
