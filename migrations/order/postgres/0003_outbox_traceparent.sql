-- The W3C traceparent of the request that wrote an event: the message continues that
-- request's trace even when a later request or the maintenance schedule publishes it.
ALTER TABLE outbox ADD COLUMN traceparent TEXT NULL;
