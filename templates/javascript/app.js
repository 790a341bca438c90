// The {{name}} service as a platform component: the WIT exports (wit/world.wit) over the
// logic in service.js. Built by `platform build {{name}}` with componentize-js (build.mjs).
//
// Every call runs in a fresh instance: keep nothing between requests in module state.
// WIT's s64 is a BigInt here; results that are errors arrive as thrown errors whose
// `payload` is the WIT error variant ({ tag, val }).

import * as cache from 'platform:service/cache@0.2.0';
import * as config from 'platform:service/config@0.2.0';
import * as database from 'platform:service/database@0.2.0';
import { log } from 'platform:service/logging@0.2.0';
import { Notes, NOTE_MAX_CHARS, validationError, whoami } from './service.js';

function route(method, path, summary, { successStatus = 200, requiresAuth = false, errors = [], requestSchema } = {}) {
  return {
    method, path, requiresAuth, summary, description: '', tags: ['{{name}}'], successStatus,
    responseSchema: undefined,
    errors: errors.map(([status, description]) => ({ status, description })),
    requestSchema,
  };
}

const NOTE_BODY = JSON.stringify({
  type: 'object',
  required: ['text'],
  properties: { text: { type: 'string', minLength: 1, maxLength: NOTE_MAX_CHARS } },
});

// The route table, in the order `handle` dispatches on (`req.routeIndex`).
const ROUTES = [
  route('get', '/notes', 'The latest notes'),
  route('post', '/notes', 'Write a note', { successStatus: 201, requiresAuth: true, errors: [[422, 'Invalid note']], requestSchema: NOTE_BODY }),
  route('get', '/notes/{note_id}', 'One note', { errors: [[404, 'Note not found']] }),
  route('get', '/me', 'Who the caller is', { requiresAuth: true }),
];

/** A database value as JSON: integers as numbers, NULL as null. */
function plain(value) {
  if (value.tag === 'null') return null;
  return typeof value.val === 'bigint' ? Number(value.val) : value.val;
}

/** The notes table, through the platform's database capability. */
const store = {
  columns: 'id, user_id, username, text, created_at',
  rows(result) {
    return result.values.map((values) =>
      Object.fromEntries(result.columns.map((column, index) => [column, plain(values[index])])));
  },
  latestNotes(limit) {
    return this.rows(database.query(
      `SELECT ${this.columns} FROM notes ORDER BY id DESC LIMIT $1`, [{ tag: 'int', val: BigInt(limit) }]));
  },
  findNote(noteId) {
    return this.rows(database.query(
      `SELECT ${this.columns} FROM notes WHERE id = $1`, [{ tag: 'int', val: BigInt(noteId) }]))[0];
  },
  insertNote(userId, username, text) {
    return this.rows(database.query(
      `INSERT INTO notes (user_id, username, text) VALUES ($1, $2, $3) RETURNING ${this.columns}`,
      [{ tag: 'int', val: BigInt(userId) }, { tag: 'text', val: username }, { tag: 'text', val: text }]))[0];
  },
};

/** The platform's cache; when it is unavailable, reads go to the database. */
const platformCache = {
  get(key) {
    try { return cache.get(key); } catch { return undefined; }
  },
  set(key, value, ttlSeconds) {
    try { cache.set(key, value, ttlSeconds); } catch (error) { log('warn', `cache set failed: ${describe(error)}`); }
  },
  delete(key) {
    try { return cache.delete(key); } catch (error) { log('warn', `cache delete failed: ${describe(error)}`); return false; }
  },
};

function describe(error) {
  return error?.payload ? `${error.payload.tag}: ${error.payload.val}` : String(error);
}

function respond(status, body, headers = []) {
  return {
    status,
    headers: [['content-type', 'application/json'], ...headers],
    body: new TextEncoder().encode(JSON.stringify(body)),
  };
}

function dispatch(req) {
  const ttl = Number(config.get('cache_ttl_seconds') ?? '30');
  const notes = new Notes(store, platformCache, ttl);
  const caller = req.caller && { userId: Number(req.caller.userId), username: req.caller.username };
  switch (req.routeIndex) {
    case 0: return notes.latest();
    case 1: return notes.write(caller, req.body);
    case 2: {
      const noteId = Object.fromEntries(req.params).note_id;
      if (!/^\d+$/.test(noteId)) {
        return validationError(['path', 'note_id'], 'Input should be a valid integer', 'int_parsing');
      }
      return notes.one(Number(noteId));
    }
    default: return whoami(caller, config.get('greeting') ?? 'Hello');
  }
}

export const httpHandler = {
  routes() {
    return ROUTES;
  },
  handle(req) {
    try {
      const [status, body] = dispatch(req);
      return respond(status, body);
    } catch (error) {
      if (error?.payload?.tag === 'unavailable') {
        return respond(503, { detail: 'Database unavailable, retry later' }, [['retry-after', '1']]);
      }
      log('error', `request failed: ${describe(error)}`);
      return respond(500, { detail: 'Internal Server Error' });
    }
  },
  health() {
    try {
      database.query('SELECT 1', []);
    } catch (error) {
      throw `database: ${describe(error)}`;
    }
  },
};

export const messageHandler = {
  // A stub: subscribe the service in platform.toml, then handle the events here.
  handleMessage(delivery) {
    log('info', `${delivery.message.routingKey} from ${delivery.queue}, attempt ${delivery.attempt}`);
    return { tag: 'ack' };
  },
};

export const scheduledHandler = {
  run(name) {
    throw `no schedule named ${name}`;
  },
};
