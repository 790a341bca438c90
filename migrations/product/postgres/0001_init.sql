-- Product catalogue. Money is integer cents; quantity is the number of units in stock.
CREATE TABLE products (
    id          BIGSERIAL   NOT NULL,
    name        TEXT        NOT NULL,
    description TEXT        NULL,
    price_cents BIGINT      NOT NULL,
    quantity    BIGINT      NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT products_pkey PRIMARY KEY (id),
    CONSTRAINT products_price_cents_check CHECK (price_cents > 0),
    CONSTRAINT products_quantity_check CHECK (quantity >= 0)
);
