// The wishlist service as a platform component: the WIT exports (wit/world.wit) over the
// logic in service.js. Built by `platform build wishlist` with componentize-js (build.mjs).
//
// Every call runs in a fresh instance: keep nothing between requests in module state.
// WIT's s64 is a BigInt here; results that are errors arrive as thrown errors whose
// `payload` is the WIT error variant ({ tag, val }).

import * as cache from 'platform:service/cache@0.2.0';
import * as config from 'platform:service/config@0.2.0';
import * as database from 'platform:service/database@0.2.0';
import { log } from 'platform:service/logging@0.2.0';
import { NOTE_MAX_CHARS, Wishlist, parseProductId, version } from './service.js';

function route(method, path, summary, { description = '', successStatus = 200, requiresAuth = false, errors = [], requestSchema } = {}) {
  return {
    method, path, requiresAuth, summary, description, tags: ['wishlist'], successStatus,
    responseSchema: undefined,
    errors: errors.map(([status, description]) => ({ status, description })),
    requestSchema,
  };
}

const WISH_BODY = JSON.stringify({
  type: 'object',
  properties: { note: { type: 'string', maxLength: NOTE_MAX_CHARS, default: '' } },
});

// The route table, in the order `handle` dispatches on (`req.routeIndex`).
const ROUTES = [
  route('get', '/wishlist', 'Your wishes, newest first', { requiresAuth: true }),
  route('put', '/wishlist/{product_id}', 'Wish for a product, or change its note', {
    // The route table has one success status: the other one is told in words.
    description: '201 with the new wish; 200 when the product was on the wishlist already.',
    successStatus: 201, requiresAuth: true, requestSchema: WISH_BODY,
  }),
  route('delete', '/wishlist/{product_id}', 'Remove a wish', {
    requiresAuth: true, successStatus: 204, errors: [[404, 'Not on your wishlist']],
  }),
  route('get', '/products/{product_id}/wishlisted', 'How many users wish for a product and have not bought it'),
  route('get', '/version', 'The running version of the service'),
];

/** A database value as JSON: integers as numbers, NULL as null. */
function plain(value) {
  if (value.tag === 'null') return null;
  return typeof value.val === 'bigint' ? Number(value.val) : value.val;
}

const int = (number) => ({ tag: 'int', val: BigInt(number) });

/** The wishes table, through the platform's database capability. */
const store = {
  columns: 'product_id, note, added_at, bought_order_id',
  rows(result) {
    return result.values.map((values) =>
      Object.fromEntries(result.columns.map((column, index) => [column, plain(values[index])])));
  },
  wishesOf(userId) {
    return this.rows(database.query(
      `SELECT ${this.columns} FROM wishes WHERE user_id = $1 ORDER BY added_at DESC, product_id DESC`,
      [int(userId)]));
  },
  putWish(userId, productId, note) {
    // One transaction, so that `created` tells about the row this upsert wrote.
    const transaction = database.begin();
    try {
      const key = [int(userId), int(productId)];
      const existed = transaction.query(
        'SELECT 1 FROM wishes WHERE user_id = $1 AND product_id = $2', key).values.length > 0;
      // A wish added again after it was bought is a wish again.
      transaction.execute(
        `INSERT INTO wishes (user_id, product_id, note) VALUES ($1, $2, $3)
         ON CONFLICT (user_id, product_id) DO UPDATE SET note = excluded.note, bought_order_id = NULL`,
        [...key, { tag: 'text', val: note }]);
      const row = this.rows(transaction.query(
        `SELECT ${this.columns} FROM wishes WHERE user_id = $1 AND product_id = $2`, key))[0];
      transaction.commit();
      return { row, created: !existed };
    } catch (error) {
      // Rolled back when the instance ends anyway; this frees the connection now.
      try { transaction.rollback(); } catch { /* committed, or the connection is gone */ }
      throw error;
    }
  },
  removeWish(userId, productId) {
    return database.execute(
      'DELETE FROM wishes WHERE user_id = $1 AND product_id = $2', [int(userId), int(productId)]) > 0n;
  },
  countWishing(productId) {
    return plain(database.query(
      'SELECT COUNT(*) AS wishing FROM wishes WHERE product_id = $1 AND bought_order_id IS NULL',
      [int(productId)]).values[0][0]);
  },
  markBought(userId, productId, orderId) {
    return Number(database.execute(
      `UPDATE wishes SET bought_order_id = $3
       WHERE user_id = $1 AND product_id = $2 AND bought_order_id IS NULL`,
      [int(userId), int(productId), int(orderId)]));
  },
  unmarkBought(orderId) {
    return Number(database.execute(
      'UPDATE wishes SET bought_order_id = NULL WHERE bought_order_id = $1', [int(orderId)]));
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
  if (body === undefined) {
    return { status, headers, body: new Uint8Array() };
  }
  return {
    status,
    headers: [['content-type', 'application/json'], ...headers],
    body: new TextEncoder().encode(JSON.stringify(body)),
  };
}

function wishlist() {
  const ttl = Number(config.get('cache_ttl_seconds') ?? '30');
  return new Wishlist(store, platformCache, ttl);
}

function dispatch(req) {
  if (req.routeIndex === 4) {
    return version();
  }
  const caller = req.caller && { userId: Number(req.caller.userId), username: req.caller.username };
  if (req.routeIndex === 0) {
    return wishlist().list(caller);
  }
  const [productId, refused] = parseProductId(Object.fromEntries(req.params).product_id);
  if (refused) {
    return refused;
  }
  switch (req.routeIndex) {
    case 1: return wishlist().put(caller, productId, req.body);
    case 2: return wishlist().remove(caller, productId);
    default: return wishlist().wishlisted(productId);
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
  // The order events of the service's subscription (platform.toml): an order marks the
  // buyer's wish bought, its cancellation unmarks it.
  handleMessage(delivery) {
    const [outcome, line] = wishlist().handleEvent(delivery.message.payload);
    // The host logs the reason of a retry or a dead letter itself.
    if (line) {
      log('info', line);
    }
    return outcome;
  },
};

export const scheduledHandler = {
  run(name) {
    throw `no schedule named ${name}`;
  },
};
