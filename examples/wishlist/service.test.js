// Unit tests of the wishlist service's logic: `node --test` (no host needed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NOTE_MAX_CHARS, VERSION, Wishlist, parseProductId, version, wishlistedKey } from './service.js';

/** The wishes table in memory, with the same rules as the SQL in app.js. */
class FakeStore {
  constructor() { this.wishes = []; this.clock = 0; this.failure = undefined; }
  check() { if (this.failure) throw this.failure; }
  find(userId, productId) {
    return this.wishes.find((w) => w.user_id === userId && w.product_id === productId);
  }
  row(wish) {
    const { user_id: _, ...row } = wish;
    return row;
  }
  wishesOf(userId) {
    this.check();
    return this.wishes.filter((w) => w.user_id === userId)
      .sort((a, b) => b.added_at.localeCompare(a.added_at)).map((w) => this.row(w));
  }
  putWish(userId, productId, note) {
    this.check();
    const wish = this.find(userId, productId);
    if (wish) {
      Object.assign(wish, { note, bought_order_id: null });
      return { row: this.row(wish), created: false };
    }
    const added = { user_id: userId, product_id: productId, note, bought_order_id: null,
      added_at: `2026-11-25T10:00:${String(this.clock++).padStart(2, '0')}Z` };
    this.wishes.push(added);
    return { row: this.row(added), created: true };
  }
  removeWish(userId, productId) {
    this.check();
    const before = this.wishes.length;
    this.wishes = this.wishes.filter((w) => w.user_id !== userId || w.product_id !== productId);
    return this.wishes.length < before;
  }
  countWishing(productId) {
    this.check();
    return this.wishes.filter((w) => w.product_id === productId && w.bought_order_id === null).length;
  }
  markBought(userId, productId, orderId) {
    this.check();
    const wish = this.find(userId, productId);
    if (!wish || wish.bought_order_id !== null) return 0;
    wish.bought_order_id = orderId;
    return 1;
  }
  unmarkBought(orderId) {
    this.check();
    const bought = this.wishes.filter((w) => w.bought_order_id === orderId);
    for (const wish of bought) wish.bought_order_id = null;
    return bought.length;
  }
}

class FakeCache {
  constructor() { this.values = new Map(); }
  get(key) { return this.values.get(key); }
  set(key, value) { this.values.set(key, value); }
  delete(key) { return this.values.delete(key); }
}

const ALICE = { userId: 7, username: 'alice' };
const BOB = { userId: 8, username: 'bob' };
const bytes = (text) => new TextEncoder().encode(text);

function wishlist() {
  const store = new FakeStore();
  const cache = new FakeCache();
  return [store, cache, new Wishlist(store, cache, 30)];
}

function event(name, { orderId = 12, userId = ALICE.userId, productId = 3, ...data } = {}) {
  return bytes(JSON.stringify({
    event: name, event_id: 'e1', occurred_at: '2026-11-25T10:00:00Z',
    data: { order_id: orderId, user_id: userId, username: 'alice', product_id: productId,
      product_name: 'Widget', quantity: 1, unit_price: 19.99, total_price: 19.99,
      status: 'pending', created_at: '2026-11-25T10:00:00Z', ...data },
  }));
}

test('a new wish is 201, putting it again is 200 with the new note', () => {
  const [, , service] = wishlist();
  const [status, wish] = service.put(ALICE, 3, bytes('{"note": "  in blue  "}'));
  assert.equal(status, 201);
  assert.deepEqual({ ...wish, added_at: undefined },
    { product_id: 3, note: 'in blue', added_at: undefined, bought: false, order_id: null });
  const [again, replaced] = service.put(ALICE, 3, bytes('{}'));
  assert.deepEqual([again, replaced.note], [200, '']);
});

test('the wishlist is the caller\'s own, newest first', () => {
  const [, , service] = wishlist();
  service.put(ALICE, 3, bytes('{}'));
  service.put(ALICE, 5, bytes('{"note": "for the birthday"}'));
  service.put(BOB, 9, bytes('{}'));
  const [status, wishes] = service.list(ALICE);
  assert.equal(status, 200);
  assert.deepEqual(wishes.map((w) => w.product_id), [5, 3]);
  assert.deepEqual(service.list({ userId: 99, username: 'carol' }), [200, []]);
});

test('a removed wish is 204, then 404', () => {
  const [, , service] = wishlist();
  service.put(ALICE, 3, bytes('{}'));
  assert.deepEqual(service.remove(ALICE, 3), [204, undefined]);
  assert.deepEqual(service.remove(ALICE, 3), [404, { detail: 'Not on your wishlist' }]);
  assert.deepEqual(service.list(ALICE), [200, []]);
});

test('bad bodies are 422 and write nothing', () => {
  const [store, , service] = wishlist();
  for (const [body, loc, type] of [
    ['not json', ['body'], 'json_invalid'],
    ['', ['body'], 'model_type'],
    ['[]', ['body'], 'model_type'],
    ['"note"', ['body'], 'model_type'],
    ['{"note": 5}', ['body', 'note'], 'string_type'],
    ['{"note": null}', ['body', 'note'], 'string_type'],
    [JSON.stringify({ note: 'x'.repeat(NOTE_MAX_CHARS + 1) }), ['body', 'note'], 'string_too_long'],
  ]) {
    const [status, answer] = service.put(ALICE, 3, bytes(body));
    assert.equal(status, 422, body);
    assert.deepEqual([answer.detail[0].loc, answer.detail[0].type], [loc, type], body);
  }
  assert.deepEqual(store.wishes, []);
});

test('a note of the longest length is taken once stripped, emoji counted as one', () => {
  const [, , service] = wishlist();
  assert.equal(service.put(ALICE, 3, bytes(JSON.stringify({ note: ` ${'x'.repeat(NOTE_MAX_CHARS)} ` })))[0], 201);
  assert.equal(service.put(ALICE, 4, bytes(JSON.stringify({ note: '🎁'.repeat(NOTE_MAX_CHARS) })))[0], 201);
});

test('a product id that is not a positive integer is 422', () => {
  const refused = [422, { detail: [{ type: 'int_parsing', loc: ['path', 'product_id'], msg: 'Input should be a valid integer' }] }];
  for (const text of ['abc', '0', '-3', '1.5', '', ' 3', '99999999999999999999']) {
    assert.deepEqual(parseProductId(text), [null, refused], text);
  }
  assert.deepEqual(parseProductId('42'), [42, null]);
});

test('the wishlisted count comes from the store, then from the cache', () => {
  const [store, cache, service] = wishlist();
  service.put(ALICE, 3, bytes('{}'));
  service.put(BOB, 3, bytes('{}'));
  assert.deepEqual(service.wishlisted(3), [200, { product_id: 3, wishlisted: 2 }]);
  assert.ok(cache.values.has(wishlistedKey(3)));
  store.wishes.length = 0;
  assert.deepEqual(service.wishlisted(3)[1].wishlisted, 2, 'served from the cache');
  assert.deepEqual(service.wishlisted(4), [200, { product_id: 4, wishlisted: 0 }]);
});

test('a write invalidates the cached count', () => {
  const [, , service] = wishlist();
  service.put(ALICE, 3, bytes('{}'));
  assert.equal(service.wishlisted(3)[1].wishlisted, 1);
  service.put(BOB, 3, bytes('{}'));
  assert.equal(service.wishlisted(3)[1].wishlisted, 2);
  service.remove(ALICE, 3);
  assert.equal(service.wishlisted(3)[1].wishlisted, 1);
});

test('order.created marks the wish bought; a redelivery changes nothing', () => {
  const [store, , service] = wishlist();
  service.put(ALICE, 3, bytes('{}'));
  assert.equal(service.wishlisted(3)[1].wishlisted, 1);
  const [outcome, line] = service.handleEvent(event('order.created'));
  assert.deepEqual(outcome, { tag: 'ack' });
  assert.match(line, /order\.created event e1: user 7's wish for product 3 bought \(order 12\)/);
  assert.equal(service.wishlisted(3)[1].wishlisted, 0, 'the event invalidated the cache');
  assert.deepEqual(service.list(ALICE)[1].map((w) => [w.bought, w.order_id]), [[true, 12]]);

  assert.deepEqual(service.handleEvent(event('order.created')), [{ tag: 'ack' }, undefined]);
  assert.equal(store.wishes[0].bought_order_id, 12);
});

test('an order of a product nobody wished for is acknowledged', () => {
  const [, , service] = wishlist();
  assert.deepEqual(service.handleEvent(event('order.created', { productId: 77 })), [{ tag: 'ack' }, undefined]);
});

test('order.cancelled unmarks the wish; putting a bought wish again unmarks it too', () => {
  const [store, , service] = wishlist();
  service.put(ALICE, 3, bytes('{}'));
  service.handleEvent(event('order.created'));
  assert.equal(service.wishlisted(3)[1].wishlisted, 0);
  const [outcome, line] = service.handleEvent(event('order.cancelled'));
  assert.deepEqual(outcome, { tag: 'ack' });
  assert.match(line, /no longer bought/);
  assert.equal(service.wishlisted(3)[1].wishlisted, 1, 'the event invalidated the cache');
  assert.deepEqual(service.handleEvent(event('order.cancelled')), [{ tag: 'ack' }, undefined]);

  service.handleEvent(event('order.created', { orderId: 13 }));
  assert.equal(service.put(ALICE, 3, bytes('{}'))[0], 200);
  assert.equal(store.wishes[0].bought_order_id, null);
});

test('unknown and malformed events are dead-lettered with the reason', () => {
  const [store, , service] = wishlist();
  service.put(ALICE, 3, bytes('{}'));
  for (const [payload, reason] of [
    [bytes('not json'), /^not JSON/],
    [bytes('[1]'), /not a JSON object/],
    [event('order.shipped'), /unknown event "order\.shipped"/],
    [bytes('{"event": "order.created"}'), /data is not an object/],
    [event('order.created', { userId: '7' }), /data\.user_id/],
    [event('order.created', { orderId: 1.5 }), /data\.order_id/],
    [event('order.cancelled', { productId: null }), /data\.product_id/],
  ]) {
    const [outcome, line] = service.handleEvent(payload);
    assert.equal(outcome.tag, 'dead-letter');
    assert.match(outcome.val, reason);
    assert.equal(line, undefined);
  }
  assert.equal(store.wishes[0].bought_order_id, null);
});

test('a database that is down is waited out, another failure retried', () => {
  const [store, , service] = wishlist();
  store.failure = Object.assign(new Error('down'), { payload: { tag: 'unavailable', val: 'pool timed out' } });
  const [outcome] = service.handleEvent(event('order.created'));
  assert.deepEqual(outcome, { tag: 'unavailable', val: 'event e1: database unavailable: pool timed out' });
  store.failure = Object.assign(new Error('bad'), { payload: { tag: 'query-failed', val: 'deadlock detected' } });
  assert.equal(service.handleEvent(event('order.cancelled'))[0].tag, 'retry');
});

test('the version is the one on its line', () => {
  assert.deepEqual(version(), [200, { service: 'wishlist', version: VERSION }]);
});
