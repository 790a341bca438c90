-- SQLite twin of ../postgres/0001_init.sql (see migrations/user/sqlite for what differs).
CREATE TABLE purchases (
    order_id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    product_id INTEGER NOT NULL,
    recorded_at TIMESTAMP NOT NULL DEFAULT (now())
);

CREATE INDEX purchases_user_id_product_id_idx ON purchases (user_id, product_id);

CREATE TABLE reviews (
    user_id INTEGER NOT NULL,
    username TEXT NOT NULL,
    product_id INTEGER NOT NULL,
    rating INTEGER NOT NULL CONSTRAINT reviews_rating_check CHECK (rating BETWEEN 1 AND 5),
    comment TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL DEFAULT (now()),
    updated_at TIMESTAMP NOT NULL DEFAULT (now()),
    CONSTRAINT reviews_pkey PRIMARY KEY (user_id, product_id)
);

CREATE INDEX reviews_product_id_updated_at_idx ON reviews (product_id, updated_at DESC);
