-- Reservations with keys: the product service applies a reserve or release once per
-- Idempotency-Key, and the order service writes down each stock change it owes before it
-- makes it, so that a change whose answer was lost (a timeout, a crash) is settled later
-- under the same key. See the module comment of components/order/src/service.rs.

-- The key the order's stock was reserved under (NULL for orders placed before keys).
ALTER TABLE orders ADD COLUMN reservation_id TEXT NULL;

CREATE TABLE stock_changes (
    id BIGSERIAL PRIMARY KEY,
    idempotency_key TEXT NOT NULL,
    action TEXT NOT NULL,
    product_id BIGINT NOT NULL,
    quantity BIGINT NOT NULL,
    -- The caller's authorization header, forwarded when the change is settled later; the
    -- row is deleted as soon as the change is settled.
    caller_authorization TEXT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT stock_changes_action_check CHECK (action IN ('reserve', 'release')),
    CONSTRAINT stock_changes_key_action_key UNIQUE (idempotency_key, action)
);

CREATE INDEX stock_changes_created_at_idx ON stock_changes (created_at);
