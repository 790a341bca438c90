"""The {{name}} service as a platform component: the WIT exports (`wit/world.wit`) over the
logic in `service.py`. Built by `platform build {{name}}` with componentize-py.

Every call runs in a fresh instance: keep nothing between requests in module globals.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import cache, config, database, http_types, logging, messaging_types

import service

Method = http_types.Method


def route(method, path, summary, success_status=200, requires_auth=False, errors=(),
          request_schema=None):
    return http_types.Route(
        method=method, path=path, requires_auth=requires_auth, summary=summary,
        description="", tags=["{{name}}"], success_status=success_status,
        response_schema=None,
        errors=[http_types.DocumentedError(status, text) for status, text in errors],
        request_schema=request_schema,
    )


NOTE_BODY = json.dumps({
    "type": "object",
    "required": ["text"],
    "properties": {"text": {"type": "string", "minLength": 1,
                            "maxLength": service.NOTE_MAX_CHARS}},
})

# The route table, in the order `handle` dispatches on (`req.route_index`).
ROUTES = [
    route(Method.GET, "/notes", "The latest notes"),
    route(Method.POST, "/notes", "Write a note", 201, True, [(422, "Invalid note")], NOTE_BODY),
    route(Method.GET, "/notes/{note_id}", "One note", errors=[(404, "Note not found")]),
    route(Method.GET, "/me", "Who the caller is", requires_auth=True),
]


def text(value):
    return None if isinstance(value, database.Value_Null) else value.value


class DatabaseStore:
    """The notes table, through the platform's database capability."""

    COLUMNS = "id, user_id, username, text, created_at"

    def latest_notes(self, limit):
        rows = database.query(
            f"SELECT {self.COLUMNS} FROM notes ORDER BY id DESC LIMIT $1",
            [database.Value_Int(limit)],
        )
        return [self.note(rows.columns, values) for values in rows.values]

    def find_note(self, note_id):
        rows = database.query(
            f"SELECT {self.COLUMNS} FROM notes WHERE id = $1", [database.Value_Int(note_id)]
        )
        return self.note(rows.columns, rows.values[0]) if rows.values else None

    def insert_note(self, user_id, username, note_text):
        rows = database.query(
            f"INSERT INTO notes (user_id, username, text) VALUES ($1, $2, $3) "
            f"RETURNING {self.COLUMNS}",
            [database.Value_Int(user_id), database.Value_Text(username),
             database.Value_Text(note_text)],
        )
        return self.note(rows.columns, rows.values[0])

    @staticmethod
    def note(columns, values):
        return {column: text(value) for column, value in zip(columns, values)}


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
        ttl = int(config.get("cache_ttl_seconds") or "30")
        notes = service.Notes(DatabaseStore(), PlatformCache(), ttl)
        caller = req.caller and {"user_id": req.caller.user_id, "username": req.caller.username}
        if req.route_index == 0:
            return notes.latest()
        if req.route_index == 1:
            return notes.write(caller, req.body)
        if req.route_index == 2:
            note_id = dict(req.params)["note_id"]
            # isascii too: `isdigit` alone accepts digits like "²" that `int` refuses.
            if not (note_id.isascii() and note_id.isdigit()):
                return service.validation_error(["path", "note_id"],
                                                "Input should be a valid integer", "int_parsing")
            return notes.one(int(note_id))
        return service.whoami(caller, config.get("greeting") or "Hello")

    def health(self):
        try:
            database.query("SELECT 1", [])
        except Err as error:
            raise Err(f"database: {error.value}")


class MessageHandler(exports.MessageHandler):
    def handle_message(self, delivery):
        # A stub: subscribe the service in platform.toml, then handle the events here.
        logging.log(logging.Level.INFO,
                    f"{delivery.message.routing_key} from {delivery.queue}, attempt {delivery.attempt}")
        return messaging_types.Outcome_Ack()


class ScheduledHandler(exports.ScheduledHandler):
    def run(self, name):
        raise Err(f"no schedule named {name}")
