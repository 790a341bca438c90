"""The reviews service's logic, apart from the platform: plain Python over a `store` and a
`cache` (see `app.py` for the real ones), so that `python3 -m unittest` tests it without a host.

Every answer is `(status, body)`; errors are FastAPI-shaped (`{"detail": ...}`, 422 lists).
"""

import json
import re

# The version `GET /version` reports. Keep it on one line: a swap test rewrites it.
VERSION = "1"

RATING_MIN, RATING_MAX = 1, 5
COMMENT_MAX_CHARS = 2000
# A product page shows this many reviews; `count` and `average` still cover all of them.
PRODUCT_REVIEWS_LIMIT = 50
# Ids travel as s64 (`database.value.int`): a larger one would trap the component.
ID_MAX = 2**63 - 1


def cache_key(product_id):
    return f"reviews:product:{product_id}"


def validation_error(location, message, kind="value_error"):
    return 422, {"detail": [{"type": kind, "loc": location, "msg": message}]}


def parse_product_id(text):
    """A `{product_id}` path segment as a positive integer, or the 422 answer that refuses it."""
    # Not `str.isdigit`: it accepts digits like "²" that `int` then refuses.
    if re.fullmatch(r"[0-9]+", text) and 1 <= int(text) <= ID_MAX:
        return int(text), None
    return None, validation_error(["path", "product_id"], "Input should be a valid integer",
                                  "int_parsing")


def is_integer(value):
    # JSON has one number type: 4.0 is the integer 4 (as in JSON Schema and FastAPI), but a
    # bool, which Python counts as an int, is not a rating.
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def parse_review(body):
    """`(rating, comment)` from a request body, or the 422 answer that refuses it."""
    try:
        data = json.loads(body or b"null")
    except ValueError:
        return None, validation_error(["body"], "JSON decode error", "json_invalid")
    if not isinstance(data, dict):
        return None, validation_error(["body"], "Input should be an object", "model_type")

    # Both fields are checked, so one answer lists every problem, as FastAPI's does.
    errors = []
    rating = data.get("rating")
    if "rating" not in data:
        errors.append(("missing", ["body", "rating"], "Field required"))
    elif not is_integer(rating):
        errors.append(("int_type", ["body", "rating"], "Input should be a valid integer"))
    elif rating < RATING_MIN:
        errors.append(("greater_than_equal", ["body", "rating"],
                       f"Input should be greater than or equal to {RATING_MIN}"))
    elif rating > RATING_MAX:
        errors.append(("less_than_equal", ["body", "rating"],
                       f"Input should be less than or equal to {RATING_MAX}"))
    comment = data.get("comment", "")
    if not isinstance(comment, str):
        errors.append(("string_type", ["body", "comment"], "Input should be a valid string"))
    else:
        comment = comment.strip()
        if len(comment) > COMMENT_MAX_CHARS:
            errors.append(("string_too_long", ["body", "comment"],
                           f"String should have at most {COMMENT_MAX_CHARS} characters"))
    if errors:
        return None, (422, {"detail": [{"type": kind, "loc": loc, "msg": msg}
                                       for kind, loc, msg in errors]})
    return (int(rating), comment), None


class Reviews:
    """Product reviews: anyone reads a product's, only a buyer of the product writes one."""

    def __init__(self, store, cache, cache_ttl_seconds):
        self.store = store
        self.cache = cache
        self.cache_ttl_seconds = cache_ttl_seconds

    def for_product(self, product_id):
        """A product's reviews, count and average, served from the cache when it has them."""
        key = cache_key(product_id)
        cached = self.cache.get(key)
        if cached is not None:
            return 200, json.loads(cached)
        count, average = self.store.product_summary(product_id)
        page = {
            "product_id": product_id,
            "count": count,
            "average": None if average is None else round(average, 2),
            "reviews": self.store.product_reviews(product_id, PRODUCT_REVIEWS_LIMIT),
        }
        self.cache.set(key, json.dumps(page).encode(), self.cache_ttl_seconds)
        return 200, page

    def write(self, caller, product_id, body):
        """The caller's review of a product: 201 when it is new, 200 when it replaced theirs."""
        fields, refused = parse_review(body)
        if refused:
            return refused
        # Only orders give the right to review: the purchases come from the order events.
        if not self.store.has_purchase(caller["user_id"], product_id):
            return 403, {"detail": "Only a buyer of this product can review it"}
        rating, comment = fields
        review, created = self.store.save_review(
            caller["user_id"], caller["username"], product_id, rating, comment
        )
        # The next read of the product's page sees this review and the new average.
        self.cache.delete(cache_key(product_id))
        return (201 if created else 200), review

    def mine(self, caller):
        return 200, self.store.user_reviews(caller["user_id"])


def version():
    return 200, {"service": "reviews", "version": VERSION}


class Malformed(Exception):
    """An order event that no retry can make usable: the handler dead-letters it."""


def parse_order_event(payload):
    """`(event, ids)` from an order event's body; raises `Malformed` saying what is wrong."""
    try:
        body = json.loads(payload)
    except ValueError as error:
        raise Malformed(f"not JSON: {error}")
    if not isinstance(body, dict):
        raise Malformed("not an event: the body is not a JSON object")
    event = body.get("event")
    if event is None:
        raise Malformed("missing field `event`")
    if event not in ("order.created", "order.cancelled"):
        raise Malformed(f"unknown event {event!r}")
    data = body.get("data")
    if not isinstance(data, dict):
        raise Malformed("missing object `data`")
    # A cancellation only needs the order; the other ids are read where they are used.
    needed = ["order_id", "user_id", "product_id"] if event == "order.created" else ["order_id"]
    ids = {}
    for field in needed:
        if field not in data:
            raise Malformed(f"{event}: missing field `data.{field}`")
        value = data[field]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ID_MAX:
            raise Malformed(f"{event}: `data.{field}` is not a positive integer: {value!r}")
        ids[field] = value
    return event, ids


def record_order_event(store, payload, log):
    """Keeps the purchases table in step with the orders; `log` takes one INFO line.

    A broker may deliver an event twice, so both cases are idempotent: a second
    `order.created` finds its purchase there, a second `order.cancelled` finds it gone.
    """
    event, ids = parse_order_event(payload)
    if event == "order.created":
        if store.record_purchase(ids["order_id"], ids["user_id"], ids["product_id"]):
            log(f"purchase recorded: order {ids['order_id']}, user {ids['user_id']}, "
                f"product {ids['product_id']}")
    else:
        # The buyer loses the right to review; a review already written stays.
        store.remove_purchase(ids["order_id"])
