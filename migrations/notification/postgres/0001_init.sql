-- Notifications recorded from order events: one row per event_id, however often the
-- broker delivers it (INSERT ... ON CONFLICT (event_id) DO NOTHING).
CREATE TABLE notifications (
    id BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL CONSTRAINT notifications_event_id_key UNIQUE,
    user_id BIGINT NOT NULL,
    order_id BIGINT NOT NULL,
    event TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- GET /notifications: one user's rows, newest first.
CREATE INDEX notifications_user_id_created_at_idx ON notifications (user_id, created_at DESC);
