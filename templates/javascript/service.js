// The {{name}} service's logic, apart from the platform: plain JavaScript over a `store`
// and a `cache` (see app.js for the real ones), so that `node --test` tests it without a
// host. Every answer is `[status, body]`; errors are FastAPI-shaped (`{"detail": ...}`).

export const NOTE_MAX_CHARS = 500;
export const CACHE_KEY = 'notes:latest';

export function validationError(loc, msg, type = 'value_error') {
  return [422, { detail: [{ type, loc, msg }] }];
}

/** The text of a note from a request body (bytes), or the 422 answer that refuses it. */
export function parseNote(body) {
  let data;
  try {
    data = JSON.parse(new TextDecoder().decode(body ?? new Uint8Array()) || 'null');
  } catch {
    return [null, validationError(['body'], 'JSON decode error', 'json_invalid')];
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    return [null, validationError(['body'], 'Input should be an object', 'model_type')];
  }
  if (typeof data.text !== 'string') {
    return [null, validationError(['body', 'text'], 'Field required', 'missing')];
  }
  const text = data.text.trim();
  if (text.length < 1 || text.length > NOTE_MAX_CHARS) {
    return [null, validationError(['body', 'text'], `Text should have 1 to ${NOTE_MAX_CHARS} characters`)];
  }
  return [text, null];
}

/** Notes people write: anyone reads the latest, a signed-in caller writes their own. */
export class Notes {
  constructor(store, cache, cacheTtlSeconds) {
    this.store = store;
    this.cache = cache;
    this.cacheTtlSeconds = cacheTtlSeconds;
  }

  /** The newest notes, served from the cache when it has them. */
  latest(limit = 20) {
    const cached = this.cache.get(CACHE_KEY);
    if (cached !== undefined) {
      return [200, JSON.parse(new TextDecoder().decode(cached))];
    }
    const notes = this.store.latestNotes(limit);
    this.cache.set(CACHE_KEY, new TextEncoder().encode(JSON.stringify(notes)), this.cacheTtlSeconds);
    return [200, notes];
  }

  one(noteId) {
    const note = this.store.findNote(noteId);
    return note === undefined ? [404, { detail: 'Note not found' }] : [200, note];
  }

  write(caller, body) {
    const [text, refused] = parseNote(body);
    if (refused) {
      return refused;
    }
    const note = this.store.insertNote(caller.userId, caller.username, text);
    // The next read of the latest notes sees this one.
    this.cache.delete(CACHE_KEY);
    return [201, note];
  }
}

export function whoami(caller, greeting) {
  return [200, { user_id: caller.userId, username: caller.username, greeting: `${greeting}, ${caller.username}` }];
}
