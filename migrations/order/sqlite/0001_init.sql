-- SQLite twin of ../postgres/0001_init.sql (see migrations/user/sqlite for what differs).
CREATE TABLE orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    product_id INTEGER NOT NULL,
    product_name TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    total_price_cents INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (now()),
    updated_at TIMESTAMP NOT NULL DEFAULT (now()),
    CONSTRAINT orders_quantity_check CHECK (quantity > 0),
    CONSTRAINT orders_unit_price_cents_check CHECK (unit_price_cents > 0),
    CONSTRAINT orders_total_price_cents_check CHECK (total_price_cents = unit_price_cents * quantity),
    CONSTRAINT orders_status_check
        CHECK (status IN ('pending', 'confirmed', 'shipped', 'delivered', 'cancelled'))
);

CREATE INDEX orders_user_id_created_at_idx ON orders (user_id, created_at DESC, id DESC);

CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (now())
);
CREATE UNIQUE INDEX outbox_event_id_key ON outbox (event_id);
