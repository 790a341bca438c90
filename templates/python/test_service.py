"""Unit tests of the {{name}} service's logic: `python3 -m unittest` (no host needed)."""

import json
import unittest

import service


class FakeStore:
    def __init__(self):
        self.notes = []

    def latest_notes(self, limit):
        return list(reversed(self.notes))[:limit]

    def find_note(self, note_id):
        return next((note for note in self.notes if note["id"] == note_id), None)

    def insert_note(self, user_id, username, text):
        note = {"id": len(self.notes) + 1, "user_id": user_id, "username": username, "text": text}
        self.notes.append(note)
        return note


class FakeCache:
    def __init__(self):
        self.values = {}

    def get(self, key):
        return self.values.get(key)

    def set(self, key, value, ttl_seconds):
        self.values[key] = value

    def delete(self, key):
        return self.values.pop(key, None) is not None


ALICE = {"user_id": 7, "username": "alice"}


class NotesTest(unittest.TestCase):
    def setUp(self):
        self.store, self.cache = FakeStore(), FakeCache()
        self.notes = service.Notes(self.store, self.cache, 60)

    def test_a_written_note_is_read_back_newest_first(self):
        self.assertEqual(self.notes.write(ALICE, b'{"text": "first"}')[0], 201)
        status, note = self.notes.write(ALICE, b'{"text": " second "}')
        self.assertEqual((status, note["text"], note["username"]), (201, "second", "alice"))
        status, latest = self.notes.latest()
        self.assertEqual([note["text"] for note in latest], ["second", "first"])
        self.assertEqual(self.notes.one(note["id"]), (200, note))

    def test_the_latest_notes_come_from_the_cache_until_a_write(self):
        self.notes.write(ALICE, b'{"text": "cached"}')
        self.notes.latest()
        self.store.notes.clear()
        self.assertEqual(len(self.notes.latest()[1]), 1, "served from the cache")
        self.notes.write(ALICE, b'{"text": "new"}')
        self.assertEqual([note["text"] for note in self.notes.latest()[1]], ["new"])

    def test_bad_bodies_are_422_and_write_nothing(self):
        for body in [b"not json", b"[]", b"{}", b'{"text": 5}', b'{"text": "  "}',
                     json.dumps({"text": "x" * (service.NOTE_MAX_CHARS + 1)}).encode()]:
            status, answer = self.notes.write(ALICE, body)
            self.assertEqual(status, 422, body)
            self.assertIsInstance(answer["detail"], list)
        self.assertEqual(self.store.notes, [])

    def test_an_unknown_note_is_404(self):
        self.assertEqual(self.notes.one(99), (404, {"detail": "Note not found"}))

    def test_whoami_greets_the_caller(self):
        self.assertEqual(service.whoami(ALICE, "Hello")[1]["greeting"], "Hello, alice")


if __name__ == "__main__":
    unittest.main()
