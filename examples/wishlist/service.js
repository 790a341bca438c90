// The wishlist service's logic, apart from the platform: plain JavaScript over a `store`
// and a `cache` (see app.js for the real ones), so that `node --test` tests it without a
// host. Every answer to a request is `[status, body]`; errors are FastAPI-shaped
// (`{"detail": ...}`). A store call that fails throws the platform's error, whose
// `payload` is `{ tag, val }` (tag 'unavailable' when the database is down).

// Tests build a second version by rewriting this line: keep it on one line, as it is.
export const VERSION = '1';

export const NOTE_MAX_CHARS = 500;
export const EVENTS = ['order.created', 'order.cancelled'];

/** The cache key of a product's count: each write that can change the count deletes it. */
export function wishlistedKey(productId) {
  return `wishlisted:${productId}`;
}

export function validationError(loc, msg, type = 'value_error') {
  return [422, { detail: [{ type, loc, msg }] }];
}

/** A product id from the path, or the 422 answer that refuses it. */
export function parseProductId(text) {
  const productId = Number(text);
  // Ids are positive and must survive the trip to an s64 and back through a JS number.
  if (!/^\d+$/.test(text) || productId < 1 || !Number.isSafeInteger(productId)) {
    return [null, validationError(['path', 'product_id'], 'Input should be a valid integer', 'int_parsing')];
  }
  return [productId, null];
}

/** The note of a wish from a request body (bytes), or the 422 answer that refuses it. */
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
  if (data.note === undefined) {
    return ['', null];
  }
  if (typeof data.note !== 'string') {
    return [null, validationError(['body', 'note'], 'Input should be a valid string', 'string_type')];
  }
  const note = data.note.trim();
  // Characters as Python counts them (code points), not UTF-16 units: an emoji is one.
  if ([...note].length > NOTE_MAX_CHARS) {
    return [null, validationError(['body', 'note'],
      `String should have at most ${NOTE_MAX_CHARS} characters`, 'string_too_long')];
  }
  return [note, null];
}

/** A wish as the API shows it, from a row of the wishes table. */
function shown(row) {
  return {
    product_id: row.product_id,
    note: row.note,
    added_at: row.added_at,
    bought: row.bought_order_id !== null,
    order_id: row.bought_order_id,
  };
}

/** An order event's body (bytes), or the reason it can never be handled. */
export function parseEvent(payload) {
  let event;
  try {
    event = JSON.parse(new TextDecoder().decode(payload));
  } catch (error) {
    return [null, `not JSON: ${error.message}`];
  }
  if (event === null || typeof event !== 'object' || Array.isArray(event)) {
    return [null, 'not a JSON object'];
  }
  if (!EVENTS.includes(event.event)) {
    return [null, `unknown event ${JSON.stringify(event.event)}`];
  }
  const data = event.data;
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    return [null, `${event.event}: data is not an object`];
  }
  for (const field of ['order_id', 'user_id', 'product_id']) {
    if (!Number.isSafeInteger(data[field])) {
      return [null, `${event.event}: data.${field} is missing or not an integer`];
    }
  }
  return [{
    name: event.event,
    // Only for the logs: the event is found again by its order, not by its id.
    eventId: typeof event.event_id === 'string' ? event.event_id : '?',
    orderId: data.order_id,
    userId: data.user_id,
    productId: data.product_id,
  }, null];
}

/** A signed-in caller's wishlist, and how many people wish for each product. */
export class Wishlist {
  constructor(store, cache, cacheTtlSeconds) {
    this.store = store;
    this.cache = cache;
    this.cacheTtlSeconds = cacheTtlSeconds;
  }

  /** The caller's wishes, newest first. */
  list(caller) {
    return [200, this.store.wishesOf(caller.userId).map(shown)];
  }

  /** Adds a wish, or replaces its note: 201 when it is new, 200 when it was there. */
  put(caller, productId, body) {
    const [note, refused] = parseNote(body);
    if (refused) {
      return refused;
    }
    const { row, created } = this.store.putWish(caller.userId, productId, note);
    this.cache.delete(wishlistedKey(productId));
    return [created ? 201 : 200, shown(row)];
  }

  remove(caller, productId) {
    const removed = this.store.removeWish(caller.userId, productId);
    this.cache.delete(wishlistedKey(productId));
    return removed ? [204, undefined] : [404, { detail: 'Not on your wishlist' }];
  }

  /** How many users wish for the product and have not bought it yet, cached for a while. */
  wishlisted(productId) {
    const key = wishlistedKey(productId);
    const cached = this.cache.get(key);
    let count;
    if (cached !== undefined) {
      count = Number(new TextDecoder().decode(cached));
    } else {
      count = this.store.countWishing(productId);
      this.cache.set(key, new TextEncoder().encode(String(count)), this.cacheTtlSeconds);
    }
    return [200, { product_id: productId, wishlisted: count }];
  }

  /**
   * One order event: `[outcome, line]`, the outcome for the host (the WIT `outcome`
   * variant) and the line to log at INFO level, if any.
   */
  handleEvent(payload) {
    const [event, reason] = parseEvent(payload);
    if (reason) {
      return [{ tag: 'dead-letter', val: reason }, undefined];
    }
    const { name, eventId, orderId, userId, productId } = event;
    let changed;
    try {
      // Both updates are idempotent, so a redelivered event changes nothing the second time.
      changed = name === 'order.created'
        ? this.store.markBought(userId, productId, orderId)
        : this.store.unmarkBought(orderId);
    } catch (error) {
      const cause = error?.payload ? `${error.payload.tag}: ${error.payload.val}` : String(error);
      // A database that is down is waited out; any other failure counts as an attempt.
      const tag = error?.payload?.tag === 'unavailable' ? 'unavailable' : 'retry';
      return [{ tag, val: `event ${eventId}: database ${cause}` }, undefined];
    }
    // Also when nothing changed: an earlier delivery may have updated the row and then
    // failed before it got here.
    this.cache.delete(wishlistedKey(productId));
    if (changed === 0) {
      return [{ tag: 'ack' }, undefined];
    }
    const what = name === 'order.created' ? 'bought' : 'no longer bought';
    return [{ tag: 'ack' },
      `${name} event ${eventId}: user ${userId}'s wish for product ${productId} ${what} (order ${orderId})`];
  }
}

export function version() {
  return [200, { service: 'wishlist', version: VERSION }];
}
