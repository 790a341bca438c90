-- SQLite twin of ../postgres/0001_init.sql (see migrations/user/sqlite for what differs).
CREATE TABLE products (
    id          INTEGER   PRIMARY KEY AUTOINCREMENT,
    name        TEXT      NOT NULL,
    description TEXT      NULL,
    price_cents INTEGER   NOT NULL,
    quantity    INTEGER   NOT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT (now()),
    updated_at  TIMESTAMP NOT NULL DEFAULT (now()),
    CONSTRAINT products_price_cents_check CHECK (price_cents > 0),
    CONSTRAINT products_quantity_check CHECK (quantity >= 0)
);
