-- Stock changes made under an idempotency key (the order service sends its reservation id):
-- each (key, operation) is applied once, and a repeat is answered with the first answer.
-- A row is written in the same transaction as the stock change it records.
CREATE TABLE stock_operations (
    idempotency_key TEXT        NOT NULL,
    operation       TEXT        NOT NULL,
    product_id      BIGINT      NOT NULL,
    quantity        BIGINT      NOT NULL,
    -- The first answer, replayed to a repeat: its HTTP status and JSON body.
    status          INTEGER     NOT NULL,
    body            TEXT        NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT stock_operations_pkey PRIMARY KEY (idempotency_key, operation),
    CONSTRAINT stock_operations_operation_check CHECK (operation IN ('reserve', 'release'))
);

-- The prune schedule deletes keys past their retention, oldest first.
CREATE INDEX stock_operations_created_at_idx ON stock_operations (created_at);
