"""Unit tests of the reviews service's logic: `python3 -m unittest` (no host needed)."""

import json
import unittest

import service


class FakeStore:
    """The two tables in memory, with the same keys: a purchase per order, a review per
    user and product."""

    def __init__(self):
        self.purchases = {}
        self.reviews = {}
        self.clock = 0

    def now(self):
        # Strictly increasing, and ordered as text like the real RFC 3339 timestamps.
        self.clock += 1
        return f"2026-11-25T10:00:{self.clock:02d}Z"

    def product_summary(self, product_id):
        ratings = [r["rating"] for r in self.reviews.values() if r["product_id"] == product_id]
        return len(ratings), (sum(ratings) / len(ratings) if ratings else None)

    def product_reviews(self, product_id, limit):
        rows = sorted((r for r in self.reviews.values() if r["product_id"] == product_id),
                      key=lambda r: (r["updated_at"], r["user_id"]), reverse=True)
        fields = ["user_id", "username", "rating", "comment", "updated_at"]
        return [{field: row[field] for field in fields} for row in rows[:limit]]

    def user_reviews(self, user_id):
        rows = [dict(r) for r in self.reviews.values() if r["user_id"] == user_id]
        return sorted(rows, key=lambda r: (r["updated_at"], r["product_id"]), reverse=True)

    def has_purchase(self, user_id, product_id):
        return (user_id, product_id) in self.purchases.values()

    def save_review(self, user_id, username, product_id, rating, comment):
        key = (user_id, product_id)
        earlier = self.reviews.get(key)
        now = self.now()
        self.reviews[key] = {
            "user_id": user_id, "username": username, "product_id": product_id,
            "rating": rating, "comment": comment,
            "created_at": earlier["created_at"] if earlier else now, "updated_at": now,
        }
        return dict(self.reviews[key]), earlier is None

    def record_purchase(self, order_id, user_id, product_id):
        if order_id in self.purchases:
            return False
        self.purchases[order_id] = (user_id, product_id)
        return True

    def remove_purchase(self, order_id):
        return self.purchases.pop(order_id, None) is not None


class FakeCache:
    def __init__(self):
        self.values = {}

    def get(self, key):
        return self.values.get(key)

    def set(self, key, value, ttl_seconds):
        self.values[key] = value

    def delete(self, key):
        return self.values.pop(key, None) is not None


class DownCache(FakeCache):
    """A cache that is unavailable: `PlatformCache` turns every failure into a miss."""

    def get(self, key):
        return None

    def set(self, key, value, ttl_seconds):
        pass


ALICE = {"user_id": 7, "username": "alice"}
BOB = {"user_id": 8, "username": "bob"}
WIDGET = 3


def review(rating, comment=None):
    body = {"rating": rating}
    if comment is not None:
        body["comment"] = comment
    return json.dumps(body).encode()


def order_event(event, order_id=12, user_id=ALICE["user_id"], product_id=WIDGET, **data):
    data = {"order_id": order_id, "user_id": user_id, "username": "alice",
            "product_id": product_id, "product_name": "Widget", "quantity": 2,
            "unit_price": "19.99", "total_price": "39.98", "status": "pending",
            "created_at": "2026-11-25T10:00:00Z", **data}
    return json.dumps({"event": event, "event_id": f"e-{event}-{order_id}",
                       "occurred_at": "2026-11-25T10:00:00Z", "data": data}).encode()


class ReviewsTest(unittest.TestCase):
    def setUp(self):
        self.store, self.cache = FakeStore(), FakeCache()
        self.reviews = service.Reviews(self.store, self.cache, 30)
        self.store.record_purchase(1, ALICE["user_id"], WIDGET)
        self.store.record_purchase(2, BOB["user_id"], WIDGET)

    def test_only_a_buyer_reviews(self):
        status, answer = self.reviews.write(ALICE, WIDGET + 1, review(5))
        self.assertEqual((status, answer),
                         (403, {"detail": "Only a buyer of this product can review it"}))
        self.assertEqual(self.store.reviews, {})

    def test_a_first_review_is_201_and_a_second_replaces_it_with_200(self):
        status, first = self.reviews.write(ALICE, WIDGET, review(2, "  meh  "))
        self.assertEqual((status, first["rating"], first["comment"]), (201, 2, "meh"))
        self.assertEqual(set(first), {"user_id", "username", "product_id", "rating", "comment",
                                      "created_at", "updated_at"})
        status, second = self.reviews.write(ALICE, WIDGET, review(4))
        self.assertEqual((status, second["rating"], second["comment"]), (200, 4, ""))
        self.assertEqual(second["created_at"], first["created_at"])
        self.assertGreater(second["updated_at"], first["updated_at"])
        self.assertEqual(self.reviews.mine(ALICE), (200, [second]))

    def test_a_product_page_counts_and_averages_newest_first(self):
        self.assertEqual(self.reviews.for_product(WIDGET),
                         (200, {"product_id": WIDGET, "count": 0, "average": None,
                                "reviews": []}))
        self.reviews.write(ALICE, WIDGET, review(5))
        self.reviews.write(BOB, WIDGET, review(4, "good"))
        self.store.record_purchase(3, 9, WIDGET)
        self.reviews.write({"user_id": 9, "username": "carol"}, WIDGET, review(4))
        status, page = self.reviews.for_product(WIDGET)
        self.assertEqual((status, page["count"], page["average"]), (200, 3, 4.33))
        self.assertEqual([r["username"] for r in page["reviews"]], ["carol", "bob", "alice"])
        bob = page["reviews"][1]
        self.assertEqual(bob, {"user_id": 8, "username": "bob", "rating": 4, "comment": "good",
                               "updated_at": bob["updated_at"]})

    def test_a_cached_page_is_served_without_the_store(self):
        self.reviews.write(ALICE, WIDGET, review(5))
        _, page = self.reviews.for_product(WIDGET)
        self.assertIn(service.cache_key(WIDGET), self.cache.values)
        self.reviews.store = None  # any store call would now fail
        self.assertEqual(self.reviews.for_product(WIDGET), (200, page))

    def test_a_write_invalidates_the_cached_page(self):
        self.reviews.write(ALICE, WIDGET, review(5))
        self.reviews.for_product(WIDGET)
        self.reviews.write(BOB, WIDGET, review(1))
        self.assertNotIn(service.cache_key(WIDGET), self.cache.values)
        self.assertEqual(self.reviews.for_product(WIDGET)[1]["average"], 3.0)

    def test_an_unavailable_cache_falls_back_to_the_store(self):
        reviews = service.Reviews(self.store, DownCache(), 30)
        self.assertEqual(reviews.write(ALICE, WIDGET, review(3))[0], 201)
        self.assertEqual(reviews.for_product(WIDGET)[1]["count"], 1)

    def test_bad_bodies_are_422_and_write_nothing(self):
        cases = {
            b"not json": ["body"],
            b"": ["body"],
            b"[]": ["body"],
            b"{}": ["body", "rating"],
            b'{"rating": "5"}': ["body", "rating"],
            b'{"rating": true}': ["body", "rating"],
            b'{"rating": 4.5}': ["body", "rating"],
            b'{"rating": null}': ["body", "rating"],
            review(0): ["body", "rating"],
            review(6): ["body", "rating"],
            review(3, 5): ["body", "comment"],
            b'{"rating": 3, "comment": null}': ["body", "comment"],
            review(3, "x" * (service.COMMENT_MAX_CHARS + 1)): ["body", "comment"],
        }
        for body, location in cases.items():
            status, answer = self.reviews.write(ALICE, WIDGET, body)
            self.assertEqual(status, 422, body)
            self.assertEqual(answer["detail"][0]["loc"], location, body)
        self.assertEqual(self.store.reviews, {})

    def test_every_problem_of_a_body_is_listed(self):
        _, answer = self.reviews.write(ALICE, WIDGET, b'{"rating": 9, "comment": []}')
        self.assertEqual([error["loc"] for error in answer["detail"]],
                         [["body", "rating"], ["body", "comment"]])

    def test_edge_values_are_accepted(self):
        self.assertEqual(self.reviews.write(ALICE, WIDGET, review(1, "x" * 2000))[0], 201)
        # Surrounding blanks do not count towards the limit; 5.0 is the JSON integer 5.
        _, saved = self.reviews.write(ALICE, WIDGET,
                                      b'{"rating": 5.0, "comment": " ' + b"y" * 2000 + b' "}')
        self.assertEqual((saved["rating"], len(saved["comment"])), (5, 2000))


class ProductIdTest(unittest.TestCase):
    def test_a_positive_integer_is_accepted(self):
        self.assertEqual(service.parse_product_id("42"), (42, None))

    def test_anything_else_is_422(self):
        expected = (422, {"detail": [{"type": "int_parsing", "loc": ["path", "product_id"],
                                      "msg": "Input should be a valid integer"}]})
        for text in ["0", "-1", "abc", "1.5", "²", " 1", str(2**63)]:
            self.assertEqual(service.parse_product_id(text), (None, expected), text)


class OrderEventsTest(unittest.TestCase):
    def setUp(self):
        self.store, self.logged = FakeStore(), []

    def handle(self, payload):
        service.record_order_event(self.store, payload, self.logged.append)

    def test_a_created_order_records_a_purchase_once(self):
        self.handle(order_event("order.created"))
        self.handle(order_event("order.created"))  # a redelivery
        self.assertEqual(self.store.purchases, {12: (ALICE["user_id"], WIDGET)})
        self.assertEqual(len(self.logged), 1)
        self.assertIn("order 12", self.logged[0])

    def test_a_cancelled_order_removes_the_purchase_but_not_the_review(self):
        reviews = service.Reviews(self.store, FakeCache(), 30)
        self.handle(order_event("order.created"))
        self.assertEqual(reviews.write(ALICE, WIDGET, review(5))[0], 201)
        self.handle(order_event("order.cancelled"))
        self.handle(order_event("order.cancelled"))  # a redelivery
        self.assertEqual(self.store.purchases, {})
        self.assertEqual(reviews.write(ALICE, WIDGET, review(4))[0], 403)
        self.assertEqual(reviews.for_product(WIDGET)[1]["count"], 1)

    def test_unusable_events_are_refused_with_the_reason(self):
        cases = {
            b"not json": "not JSON",
            b"\xff": "not JSON",
            b"[1]": "not a JSON object",
            b'{"data": {}}': "missing field `event`",
            order_event("order.shipped"): "unknown event 'order.shipped'",
            b'{"event": "order.created"}': "`data`",
            order_event("order.created", order_id="12"): "`data.order_id`",
            order_event("order.created", user_id=None): "`data.user_id`",
            order_event("order.created", product_id=True): "`data.product_id`",
            order_event("order.cancelled", order_id=0): "`data.order_id`",
        }
        for payload, reason in cases.items():
            with self.assertRaises(service.Malformed, msg=payload) as refused:
                self.handle(payload)
            self.assertIn(reason, str(refused.exception), payload)
        self.assertEqual((self.store.purchases, self.logged), ({}, []))

    def test_a_missing_field_is_named(self):
        payload = json.dumps({"event": "order.created",
                              "data": {"order_id": 1, "user_id": 2}}).encode()
        with self.assertRaisesRegex(service.Malformed, r"missing field `data\.product_id`"):
            self.handle(payload)


class VersionTest(unittest.TestCase):
    def test_the_version_is_reported(self):
        self.assertEqual(service.version(),
                         (200, {"service": "reviews", "version": service.VERSION}))


if __name__ == "__main__":
    unittest.main()
