-- The wishlist service's wishes: one per user and product. An order of the product by that
-- user marks it bought (bought_order_id); cancelling the order unmarks it.
CREATE TABLE wishes (
    user_id BIGINT NOT NULL,
    product_id BIGINT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    added_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    bought_order_id BIGINT NULL,
    PRIMARY KEY (user_id, product_id)
);

-- How many users wish for a product is counted by product, across users.
CREATE INDEX wishes_product_id_idx ON wishes (product_id);
