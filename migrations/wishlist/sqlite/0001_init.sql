-- SQLite twin of ../postgres/0001_init.sql.
CREATE TABLE wishes (
    user_id BIGINT NOT NULL,
    product_id BIGINT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    added_at TIMESTAMP NOT NULL DEFAULT (now()),
    bought_order_id BIGINT NULL,
    PRIMARY KEY (user_id, product_id)
);

CREATE INDEX wishes_product_id_idx ON wishes (product_id);
