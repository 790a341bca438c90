"""The reviews service as a platform component: the WIT exports (`wit/world.wit`) over the
logic in `service.py`. Built by `platform build reviews` with componentize-py.

Every call runs in a fresh instance: keep nothing between requests in module globals.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import cache, config, database, http_types, logging, messaging_types

import service

Method = http_types.Method


def route(method, path, summary, success_status=200, requires_auth=False, errors=(),
          request_schema=None, description=""):
    return http_types.Route(
        method=method, path=path, requires_auth=requires_auth, summary=summary,
        description=description, tags=["reviews"], success_status=success_status,
        response_schema=None,
        errors=[http_types.DocumentedError(status, text) for status, text in errors],
        request_schema=request_schema,
    )


REVIEW_BODY = json.dumps({
    "type": "object",
    "required": ["rating"],
    "properties": {
        "rating": {"type": "integer", "minimum": service.RATING_MIN,
                   "maximum": service.RATING_MAX},
        "comment": {"type": "string", "maxLength": service.COMMENT_MAX_CHARS, "default": ""},
    },
})

# The route table, in the order `handle` dispatches on (`req.route_index`).
ROUTES = [
    route(Method.GET, "/products/{product_id}/reviews", "A product's reviews and average"),
    # A route documents one success status; the description names the other.
    route(Method.PUT, "/products/{product_id}/reviews/mine", "Write or replace your review",
          201, True, [(403, "The caller never bought this product")], REVIEW_BODY,
          "201 for a new review, 200 when it replaces the caller's earlier one."),
    route(Method.GET, "/me/reviews", "Your reviews", requires_auth=True),
    route(Method.GET, "/version", "The running version of the service"),
]


def plain(value):
    # Timestamps arrive as RFC 3339 text (`value.timestamp`), so every row is JSON as it is.
    return None if isinstance(value, database.Value_Null) else value.value


def records(rows):
    return [{column: plain(value) for column, value in zip(rows.columns, values)}
            for values in rows.values]


def ints(*numbers):
    return [database.Value_Int(number) for number in numbers]


class DatabaseStore:
    """The purchases and reviews tables, through the platform's database capability."""

    REVIEW = "user_id, username, product_id, rating, comment, created_at, updated_at"

    def product_summary(self, product_id):
        # The cast makes AVG a float on both backends (PostgreSQL's AVG of integers is NUMERIC).
        rows = database.query(
            "SELECT COUNT(*) AS count, AVG(CAST(rating AS DOUBLE PRECISION)) AS average "
            "FROM reviews WHERE product_id = $1",
            ints(product_id),
        )
        summary = records(rows)[0]
        return summary["count"], summary["average"]

    def product_reviews(self, product_id, limit):
        return records(database.query(
            "SELECT user_id, username, rating, comment, updated_at FROM reviews "
            "WHERE product_id = $1 ORDER BY updated_at DESC, user_id DESC LIMIT $2",
            ints(product_id, limit),
        ))

    def user_reviews(self, user_id):
        return records(database.query(
            f"SELECT {self.REVIEW} FROM reviews WHERE user_id = $1 "
            "ORDER BY updated_at DESC, product_id DESC",
            ints(user_id),
        ))

    def has_purchase(self, user_id, product_id):
        rows = database.query(
            "SELECT 1 FROM purchases WHERE user_id = $1 AND product_id = $2 LIMIT 1",
            ints(user_id, product_id),
        )
        return bool(rows.values)

    def save_review(self, user_id, username, product_id, rating, comment):
        """Upserts the caller's review; `(review, created)`."""
        # The look-up tells 201 from 200, which the upsert alone cannot say portably. Two
        # racing first reviews by one user may both say 201; the row is right either way.
        # Leaving the `with` block without commit drops the transaction: a rollback.
        with database.begin() as transaction:
            earlier = transaction.query(
                "SELECT 1 FROM reviews WHERE user_id = $1 AND product_id = $2",
                ints(user_id, product_id),
            )
            rows = transaction.query(
                "INSERT INTO reviews (user_id, username, product_id, rating, comment) "
                "VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (user_id, product_id) DO UPDATE SET username = excluded.username, "
                "rating = excluded.rating, comment = excluded.comment, updated_at = now() "
                f"RETURNING {self.REVIEW}",
                [database.Value_Int(user_id), database.Value_Text(username),
                 database.Value_Int(product_id), database.Value_Int(rating),
                 database.Value_Text(comment)],
            )
            transaction.commit()
        return records(rows)[0], not earlier.values

    def record_purchase(self, order_id, user_id, product_id):
        return database.execute(
            "INSERT INTO purchases (order_id, user_id, product_id) VALUES ($1, $2, $3) "
            "ON CONFLICT (order_id) DO NOTHING",
            ints(order_id, user_id, product_id),
        ) > 0

    def remove_purchase(self, order_id):
        return database.execute("DELETE FROM purchases WHERE order_id = $1", ints(order_id)) > 0


class PlatformCache:
    """The platform's cache; when it is unavailable, reads go to the database."""

    def get(self, key):
        try:
            return cache.get(key)
        except Err:
            return None

    def set(self, key, value, ttl_seconds):
        try:
            cache.set(key, value, ttl_seconds)
        except Err as error:
            logging.log(logging.Level.WARN, f"cache set failed: {error.value}")

    def delete(self, key):
        try:
            return cache.delete(key)
        except Err as error:
            # The entry then lives out its TTL: a page stale for at most that long.
            logging.log(logging.Level.WARN, f"cache delete failed: {error.value}")
            return False


def respond(status, body, headers=()):
    return http_types.Response(
        status=status,
        headers=[("content-type", "application/json"), *headers],
        body=json.dumps(body).encode(),
    )


class HttpHandler(exports.HttpHandler):
    def routes(self):
        return ROUTES

    def handle(self, req):
        try:
            status, body = self.dispatch(req)
            return respond(status, body)
        except Err as error:
            if isinstance(error.value, database.DatabaseError_Unavailable):
                return respond(503, {"detail": "Database unavailable, retry later"},
                               [("retry-after", "1")])
            logging.log(logging.Level.ERROR, f"request failed: {error.value}")
            return respond(500, {"detail": "Internal Server Error"})

    def dispatch(self, req):
        if req.route_index == 3:
            return service.version()
        ttl = int(config.get("cache_ttl_seconds") or "30")
        reviews = service.Reviews(DatabaseStore(), PlatformCache(), ttl)
        caller = req.caller and {"user_id": req.caller.user_id, "username": req.caller.username}
        if req.route_index == 2:
            return reviews.mine(caller)
        product_id, refused = service.parse_product_id(dict(req.params)["product_id"])
        if refused:
            return refused
        if req.route_index == 0:
            return reviews.for_product(product_id)
        return reviews.write(caller, product_id, req.body)

    def health(self):
        try:
            database.query("SELECT 1", [])
        except Err as error:
            raise Err(f"database: {error.value}")


def log_info(message):
    logging.log(logging.Level.INFO, message)


class MessageHandler(exports.MessageHandler):
    """The order events (`order_events` exchange): who bought what, hence who may review."""

    def handle_message(self, delivery):
        try:
            service.record_order_event(DatabaseStore(), delivery.message.payload, log_info)
        except service.Malformed as error:
            return messaging_types.Outcome_DeadLetter(str(error))
        except Err as error:
            reason = f"database: {error.value}"
            # A database that is down is waited out without using up the retries.
            if isinstance(error.value, database.DatabaseError_Unavailable):
                return messaging_types.Outcome_Unavailable(reason)
            return messaging_types.Outcome_Retry(reason)
        return messaging_types.Outcome_Ack()


class ScheduledHandler(exports.ScheduledHandler):
    def run(self, name):
        # platform.toml gives the service no schedules.
        raise Err(f"no schedule named {name}")
