-- SQLite twin of ../postgres/0002_stock_operations.sql.
CREATE TABLE stock_operations (
    idempotency_key TEXT      NOT NULL,
    operation       TEXT      NOT NULL,
    product_id      INTEGER   NOT NULL,
    quantity        INTEGER   NOT NULL,
    status          INTEGER   NOT NULL,
    body            TEXT      NOT NULL,
    created_at      TIMESTAMP NOT NULL DEFAULT (now()),
    CONSTRAINT stock_operations_pkey PRIMARY KEY (idempotency_key, operation),
    CONSTRAINT stock_operations_operation_check CHECK (operation IN ('reserve', 'release'))
);

CREATE INDEX stock_operations_created_at_idx ON stock_operations (created_at);
