// Unit tests of the {{name}} service's logic: `node --test` (no host needed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Notes, NOTE_MAX_CHARS, whoami } from './service.js';

class FakeStore {
  constructor() { this.notes = []; }
  latestNotes(limit) { return [...this.notes].reverse().slice(0, limit); }
  findNote(id) { return this.notes.find((note) => note.id === id); }
  insertNote(userId, username, text) {
    const note = { id: this.notes.length + 1, user_id: userId, username, text };
    this.notes.push(note);
    return note;
  }
}

class FakeCache {
  constructor() { this.values = new Map(); }
  get(key) { return this.values.get(key); }
  set(key, value) { this.values.set(key, value); }
  delete(key) { return this.values.delete(key); }
}

const ALICE = { userId: 7, username: 'alice' };
const bytes = (text) => new TextEncoder().encode(text);

function notes() {
  const store = new FakeStore();
  return [store, new Notes(store, new FakeCache(), 60)];
}

test('a written note is read back, newest first', () => {
  const [, service] = notes();
  assert.equal(service.write(ALICE, bytes('{"text": "first"}'))[0], 201);
  const [status, note] = service.write(ALICE, bytes('{"text": " second "}'));
  assert.deepEqual([status, note.text, note.username], [201, 'second', 'alice']);
  assert.deepEqual(service.latest()[1].map((n) => n.text), ['second', 'first']);
  assert.deepEqual(service.one(note.id), [200, note]);
});

test('the latest notes come from the cache until a write', () => {
  const [store, service] = notes();
  service.write(ALICE, bytes('{"text": "cached"}'));
  service.latest();
  store.notes.length = 0;
  assert.equal(service.latest()[1].length, 1, 'served from the cache');
  service.write(ALICE, bytes('{"text": "new"}'));
  assert.deepEqual(service.latest()[1].map((n) => n.text), ['new']);
});

test('bad bodies are 422 and write nothing', () => {
  const [store, service] = notes();
  for (const body of ['not json', '[]', '{}', '{"text": 5}', '{"text": "  "}',
    JSON.stringify({ text: 'x'.repeat(NOTE_MAX_CHARS + 1) })]) {
    const [status, answer] = service.write(ALICE, bytes(body));
    assert.equal(status, 422, body);
    assert.ok(Array.isArray(answer.detail));
  }
  assert.deepEqual(store.notes, []);
});

test('an unknown note is 404', () => {
  const [, service] = notes();
  assert.deepEqual(service.one(99), [404, { detail: 'Note not found' }]);
});

test('whoami greets the caller', () => {
  assert.equal(whoami(ALICE, 'Hello')[1].greeting, 'Hello, alice');
});
