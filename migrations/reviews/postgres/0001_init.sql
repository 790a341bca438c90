-- The reviews service: who bought what (from the order events), and their reviews.

-- One row per order still standing: order.created adds it (ON CONFLICT (order_id) DO
-- NOTHING, so a redelivery is harmless), order.cancelled removes it.
CREATE TABLE purchases (
    order_id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    product_id BIGINT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The buyer check before a review is written.
CREATE INDEX purchases_user_id_product_id_idx ON purchases (user_id, product_id);

-- One review per user and product: a second one replaces the first (an upsert on the key).
CREATE TABLE reviews (
    user_id BIGINT NOT NULL,
    username TEXT NOT NULL,
    product_id BIGINT NOT NULL,
    rating INTEGER NOT NULL CONSTRAINT reviews_rating_check CHECK (rating BETWEEN 1 AND 5),
    comment TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT reviews_pkey PRIMARY KEY (user_id, product_id)
);

-- A product's page: its reviews, newest first. The caller's own come by the primary key.
CREATE INDEX reviews_product_id_updated_at_idx ON reviews (product_id, updated_at DESC);
