-- Order service schema: orders and the transactional outbox of their events.
--
-- Money is stored as integer cents (BIGINT), never as binary floating point.

CREATE TABLE orders (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL,
    product_id BIGINT NOT NULL,
    -- The product's name and price when the order was placed (the product may change later).
    product_name TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    unit_price_cents BIGINT NOT NULL,
    total_price_cents BIGINT NOT NULL,
    status TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT orders_quantity_check CHECK (quantity > 0),
    CONSTRAINT orders_unit_price_cents_check CHECK (unit_price_cents > 0),
    CONSTRAINT orders_total_price_cents_check CHECK (total_price_cents = unit_price_cents * quantity),
    CONSTRAINT orders_status_check
        CHECK (status IN ('pending', 'confirmed', 'shipped', 'delivered', 'cancelled'))
);

-- GET /orders: the caller's orders, newest first (ORDER BY created_at DESC, id DESC).
CREATE INDEX orders_user_id_created_at_idx ON orders (user_id, created_at DESC, id DESC);

-- Events written in the same transaction as the order change they describe, published
-- to the broker after commit and deleted once the broker confirmed them.
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT outbox_event_id_key UNIQUE (event_id)
);
