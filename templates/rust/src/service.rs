//! The {{name}} service's logic, apart from the platform: plain Rust over a [`Store`] and a
//! [`Cache`] (src/lib.rs has the real ones), so that `cargo test` tests it without a host.
//!
//! Every answer is `(status, body)`; errors are FastAPI-shaped (`{"detail": ...}`, 422 lists).

use serde_json::{json, Value};

pub const NOTE_MAX_CHARS: usize = 500;
pub const CACHE_KEY: &str = "notes:latest";
const LATEST_NOTES_LIMIT: i64 = 20;

/// An HTTP status and its JSON body.
pub type Answer = (u16, Value);

#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub id: i64,
    pub user_id: i64,
    pub username: String,
    pub text: String,
    pub created_at: String,
}

impl Note {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "user_id": self.user_id,
            "username": self.username,
            "text": self.text,
            "created_at": self.created_at,
        })
    }
}

/// The signed-in user the host authenticated.
pub struct Caller {
    pub user_id: i64,
    pub username: String,
}

/// Why the store failed: the two kinds answer differently (503 and 500).
#[derive(Debug, Clone, PartialEq)]
pub enum StoreError {
    /// The database is unreachable; a retry later may succeed.
    Unavailable(String),
    /// Anything else: a bad statement, an unexpected row.
    Failed(String),
}

/// The notes table.
pub trait Store {
    fn latest_notes(&self, limit: i64) -> Result<Vec<Note>, StoreError>;
    fn find_note(&self, note_id: i64) -> Result<Option<Note>, StoreError>;
    fn insert_note(&self, user_id: i64, username: &str, text: &str) -> Result<Note, StoreError>;
}

/// A cache of JSON bytes. It has no errors: a cache is an optimisation, so the real one
/// answers a miss when it is unavailable and the notes come from the store.
pub trait Cache {
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    fn set(&self, key: &str, value: &[u8], ttl_seconds: u32);
    fn delete(&self, key: &str);
}

pub fn validation_error(location: &[&str], message: &str, kind: &str) -> Answer {
    (
        422,
        json!({ "detail": [{ "type": kind, "loc": location, "msg": message }] }),
    )
}

/// The text of a note from a request body, or the 422 answer that refuses it.
pub fn parse_note(body: &[u8]) -> Result<String, Answer> {
    // No body reads as JSON `null`, which is refused as "not an object", as FastAPI does.
    let data: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .map_err(|_| validation_error(&["body"], "JSON decode error", "json_invalid"))?
    };
    let Value::Object(fields) = data else {
        return Err(validation_error(
            &["body"],
            "Input should be an object",
            "model_type",
        ));
    };
    let Some(Value::String(text)) = fields.get("text") else {
        return Err(validation_error(
            &["body", "text"],
            "Field required",
            "missing",
        ));
    };
    let text = text.trim();
    // Characters, not bytes: the limit the request schema's `maxLength` documents.
    if !(1..=NOTE_MAX_CHARS).contains(&text.chars().count()) {
        return Err(validation_error(
            &["body", "text"],
            &format!("Text should have 1 to {NOTE_MAX_CHARS} characters"),
            "value_error",
        ));
    }
    Ok(text.to_string())
}

/// A note id from the path, or the 422 answer that refuses it.
pub fn parse_note_id(param: &str) -> Result<i64, Answer> {
    // Digits only: `parse` alone would also take a sign (`+5`, `-1`).
    if !param.is_empty() && param.bytes().all(|byte| byte.is_ascii_digit()) {
        if let Ok(note_id) = param.parse() {
            return Ok(note_id);
        }
    }
    Err(validation_error(
        &["path", "note_id"],
        "Input should be a valid integer",
        "int_parsing",
    ))
}

/// Notes people write: anyone reads the latest, a signed-in caller writes their own.
pub struct Notes<S, C> {
    pub store: S,
    pub cache: C,
    pub cache_ttl_seconds: u32,
}

impl<S: Store, C: Cache> Notes<S, C> {
    /// The newest notes, served from the cache when it has them.
    pub fn latest(&self) -> Result<Answer, StoreError> {
        // A cached value that does not parse is a miss: the store has the truth.
        if let Some(cached) = self.cache.get(CACHE_KEY) {
            if let Ok(notes) = serde_json::from_slice(&cached) {
                return Ok((200, notes));
            }
        }
        let notes: Value = self
            .store
            .latest_notes(LATEST_NOTES_LIMIT)?
            .iter()
            .map(Note::to_json)
            .collect();
        self.cache.set(
            CACHE_KEY,
            notes.to_string().as_bytes(),
            self.cache_ttl_seconds,
        );
        Ok((200, notes))
    }

    pub fn one(&self, note_id: i64) -> Result<Answer, StoreError> {
        Ok(match self.store.find_note(note_id)? {
            Some(note) => (200, note.to_json()),
            None => (404, json!({ "detail": "Note not found" })),
        })
    }

    pub fn write(&self, caller: &Caller, body: &[u8]) -> Result<Answer, StoreError> {
        let text = match parse_note(body) {
            Ok(text) => text,
            Err(refused) => return Ok(refused),
        };
        let note = self
            .store
            .insert_note(caller.user_id, &caller.username, &text)?;
        // The next read of the latest notes sees this one.
        self.cache.delete(CACHE_KEY);
        Ok((201, note.to_json()))
    }
}

pub fn whoami(caller: &Caller, greeting: &str) -> Answer {
    (
        200,
        json!({
            "user_id": caller.user_id,
            "username": caller.username,
            "greeting": format!("{greeting}, {}", caller.username),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    #[derive(Default)]
    struct FakeStore {
        notes: RefCell<Vec<Note>>,
    }

    impl Store for FakeStore {
        fn latest_notes(&self, limit: i64) -> Result<Vec<Note>, StoreError> {
            let notes = self.notes.borrow();
            Ok(notes.iter().rev().take(limit as usize).cloned().collect())
        }

        fn find_note(&self, note_id: i64) -> Result<Option<Note>, StoreError> {
            let notes = self.notes.borrow();
            Ok(notes.iter().find(|note| note.id == note_id).cloned())
        }

        fn insert_note(
            &self,
            user_id: i64,
            username: &str,
            text: &str,
        ) -> Result<Note, StoreError> {
            let mut notes = self.notes.borrow_mut();
            let note = Note {
                id: notes.len() as i64 + 1,
                user_id,
                username: username.to_string(),
                text: text.to_string(),
                created_at: "2026-01-01T00:00:00Z".to_string(),
            };
            notes.push(note.clone());
            Ok(note)
        }
    }

    /// A store whose database is down.
    struct UnreachableStore;

    impl Store for UnreachableStore {
        fn latest_notes(&self, _: i64) -> Result<Vec<Note>, StoreError> {
            Err(StoreError::Unavailable("connection refused".into()))
        }

        fn find_note(&self, _: i64) -> Result<Option<Note>, StoreError> {
            Err(StoreError::Unavailable("connection refused".into()))
        }

        fn insert_note(&self, _: i64, _: &str, _: &str) -> Result<Note, StoreError> {
            Err(StoreError::Unavailable("connection refused".into()))
        }
    }

    #[derive(Default)]
    struct FakeCache {
        values: RefCell<HashMap<String, Vec<u8>>>,
    }

    impl Cache for FakeCache {
        fn get(&self, key: &str) -> Option<Vec<u8>> {
            self.values.borrow().get(key).cloned()
        }

        fn set(&self, key: &str, value: &[u8], _ttl_seconds: u32) {
            self.values
                .borrow_mut()
                .insert(key.to_string(), value.to_vec());
        }

        fn delete(&self, key: &str) {
            self.values.borrow_mut().remove(key);
        }
    }

    fn alice() -> Caller {
        Caller {
            user_id: 7,
            username: "alice".into(),
        }
    }

    fn notes() -> Notes<FakeStore, FakeCache> {
        Notes {
            store: FakeStore::default(),
            cache: FakeCache::default(),
            cache_ttl_seconds: 60,
        }
    }

    fn texts(answer: Answer) -> Vec<String> {
        let (_, latest) = answer;
        latest
            .as_array()
            .unwrap()
            .iter()
            .map(|note| note["text"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_written_note_is_read_back_newest_first() {
        let notes = notes();
        assert_eq!(
            notes.write(&alice(), br#"{"text": "first"}"#).unwrap().0,
            201
        );
        let (status, note) = notes.write(&alice(), br#"{"text": " second "}"#).unwrap();
        assert_eq!(
            (status, &note["text"], &note["username"]),
            (201, &json!("second"), &json!("alice"))
        );
        assert_eq!(texts(notes.latest().unwrap()), ["second", "first"]);
        let note_id = note["id"].as_i64().unwrap();
        assert_eq!(notes.one(note_id).unwrap(), (200, note));
    }

    #[test]
    fn the_latest_notes_come_from_the_cache_until_a_write() {
        let notes = notes();
        notes.write(&alice(), br#"{"text": "cached"}"#).unwrap();
        notes.latest().unwrap();
        notes.store.notes.borrow_mut().clear();
        assert_eq!(
            texts(notes.latest().unwrap()),
            ["cached"],
            "served from the cache"
        );
        notes.write(&alice(), br#"{"text": "new"}"#).unwrap();
        assert_eq!(texts(notes.latest().unwrap()), ["new"]);
    }

    #[test]
    fn bad_bodies_are_422_and_write_nothing() {
        let notes = notes();
        let too_long = json!({ "text": "x".repeat(NOTE_MAX_CHARS + 1) }).to_string();
        for (body, location) in [
            ("", json!(["body"])),
            ("not json", json!(["body"])),
            ("[]", json!(["body"])),
            ("{}", json!(["body", "text"])),
            (r#"{"text": 5}"#, json!(["body", "text"])),
            (r#"{"text": "  "}"#, json!(["body", "text"])),
            (too_long.as_str(), json!(["body", "text"])),
        ] {
            let (status, answer) = notes.write(&alice(), body.as_bytes()).unwrap();
            assert_eq!(status, 422, "{body}");
            assert_eq!(answer["detail"][0]["loc"], location, "{body}");
        }
        assert!(notes.store.notes.borrow().is_empty());
    }

    #[test]
    fn a_note_of_500_characters_is_taken_whatever_their_bytes() {
        let text = "é".repeat(NOTE_MAX_CHARS);
        assert_eq!(
            parse_note(json!({ "text": text }).to_string().as_bytes()),
            Ok(text)
        );
    }

    #[test]
    fn a_note_id_is_digits_only() {
        assert_eq!(parse_note_id("42"), Ok(42));
        for refused in ["abc", "+5", "-1", "1.5", "²", "99999999999999999999"] {
            let (status, answer) = parse_note_id(refused).unwrap_err();
            assert_eq!(status, 422, "{refused}");
            assert_eq!(answer["detail"][0]["loc"], json!(["path", "note_id"]));
        }
    }

    #[test]
    fn an_unknown_note_is_404() {
        assert_eq!(
            notes().one(99).unwrap(),
            (404, json!({ "detail": "Note not found" }))
        );
    }

    #[test]
    fn an_unreachable_database_is_reported_not_answered() {
        let notes = Notes {
            store: UnreachableStore,
            cache: FakeCache::default(),
            cache_ttl_seconds: 60,
        };
        let unavailable = Err(StoreError::Unavailable("connection refused".into()));
        assert_eq!(notes.latest(), unavailable);
        assert_eq!(notes.write(&alice(), br#"{"text": "lost"}"#), unavailable);
    }

    #[test]
    fn whoami_greets_the_caller() {
        assert_eq!(whoami(&alice(), "Hello").1["greeting"], "Hello, alice");
    }
}
