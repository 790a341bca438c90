"""The {{name}} service's logic, apart from the platform: plain Python over a `store` and a
`cache` (see `app.py` for the real ones), so that `python3 -m unittest` tests it without a host.

Every answer is `(status, body)`; errors are FastAPI-shaped (`{"detail": ...}`, 422 lists).
"""

import json

NOTE_MAX_CHARS = 500
CACHE_KEY = "notes:latest"


class NotFound(Exception):
    pass


def validation_error(location, message, kind="value_error"):
    return 422, {"detail": [{"type": kind, "loc": location, "msg": message}]}


def parse_note(body):
    """The text of a note from a request body, or the 422 answer that refuses it."""
    try:
        data = json.loads(body or b"null")
    except ValueError:
        return None, validation_error(["body"], "JSON decode error", "json_invalid")
    if not isinstance(data, dict):
        return None, validation_error(["body"], "Input should be an object", "model_type")
    text = data.get("text")
    if not isinstance(text, str):
        return None, validation_error(["body", "text"], "Field required", "missing")
    text = text.strip()
    if not 1 <= len(text) <= NOTE_MAX_CHARS:
        return None, validation_error(
            ["body", "text"], f"Text should have 1 to {NOTE_MAX_CHARS} characters"
        )
    return text, None


class Notes:
    """Notes people write: anyone reads the latest, a signed-in caller writes their own."""

    def __init__(self, store, cache, cache_ttl_seconds):
        self.store = store
        self.cache = cache
        self.cache_ttl_seconds = cache_ttl_seconds

    def latest(self, limit=20):
        """The newest notes, served from the cache when it has them."""
        cached = self.cache.get(CACHE_KEY)
        if cached is not None:
            return 200, json.loads(cached)
        notes = self.store.latest_notes(limit)
        self.cache.set(CACHE_KEY, json.dumps(notes).encode(), self.cache_ttl_seconds)
        return 200, notes

    def one(self, note_id):
        note = self.store.find_note(note_id)
        if note is None:
            return 404, {"detail": "Note not found"}
        return 200, note

    def write(self, caller, body):
        text, refused = parse_note(body)
        if refused:
            return refused
        note = self.store.insert_note(caller["user_id"], caller["username"], text)
        # The next read of the latest notes sees this one.
        self.cache.delete(CACHE_KEY)
        return 201, note


def whoami(caller, greeting):
    return 200, {
        "user_id": caller["user_id"],
        "username": caller["username"],
        "greeting": f"{greeting}, {caller['username']}",
    }
