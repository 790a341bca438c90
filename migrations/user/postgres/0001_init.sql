-- Users of the platform. Passwords are stored only as bcrypt hashes (hashed by the host).
-- The username's uniqueness is enforced here, by a named constraint the service recognises
-- (`users_username_key`): registration relies on the violation, never on a prior SELECT.
CREATE TABLE users (
    id              BIGSERIAL   NOT NULL,
    username        TEXT        NOT NULL,
    hashed_password TEXT        NOT NULL,
    is_active       BOOLEAN     NOT NULL DEFAULT TRUE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_username_key UNIQUE (username)
);
