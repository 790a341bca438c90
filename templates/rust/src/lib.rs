//! The {{name}} service as a platform component: the WIT exports (`wit/world.wit`) over the
//! logic in `service.rs`. Built by `platform build {{name}}` with
//! `cargo build --release --target wasm32-wasip2`.
//!
//! Every call runs in a fresh instance: keep nothing between requests in statics.

pub mod service;

// The component exists only on wasm32. Natively, where `cargo test` runs, its imports have
// no platform to call and its exports' symbols (`platform:service/...`) do not link into a
// library; the logic the tests exercise (service.rs) needs neither. So natively the crate is
// that logic alone, and wit-bindgen is not compiled at all (Cargo.toml makes it a wasm32
// dependency): `cargo test` stays quick.
#[cfg(target_arch = "wasm32")]
mod component {
    use crate::service::{self, Answer, Cache, Caller, Note, Notes, Store, StoreError};
    use exports::platform::service::{http_handler, message_handler, scheduled_handler};
    use platform::service::database::{self, DatabaseError, Value};
    use platform::service::http_types::{DocumentedError, Method, Request, Response, Route};
    use platform::service::logging::{self, Level};
    use platform::service::messaging_types::{Delivery, Outcome};
    use platform::service::{cache, config};
    use serde_json::json;

    wit_bindgen::generate!({
        path: "wit",
        world: "{{wit_name}}",
        // The platform's interfaces live in another package (wit/deps/platform) than the
        // world: generate their bindings here too.
        generate_all,
    });

    const DEFAULT_CACHE_TTL_SECONDS: u32 = 30;

    fn route(method: Method, path: &str, summary: &str) -> Route {
        Route {
            method,
            path: path.to_string(),
            requires_auth: false,
            summary: summary.to_string(),
            description: String::new(),
            tags: vec!["{{name}}".to_string()],
            success_status: 200,
            response_schema: None,
            errors: Vec::new(),
            request_schema: None,
        }
    }

    fn documented(status: u16, description: &str) -> Vec<DocumentedError> {
        vec![DocumentedError {
            status,
            description: description.to_string(),
        }]
    }

    /// The route table, in the order `handle` dispatches on (`request.route_index`).
    fn routes() -> Vec<Route> {
        let note_body = json!({
            "type": "object",
            "required": ["text"],
            "properties": {"text": {
                "type": "string", "minLength": 1, "maxLength": service::NOTE_MAX_CHARS,
            }},
        });
        vec![
            route(Method::Get, "/notes", "The latest notes"),
            Route {
                success_status: 201,
                requires_auth: true,
                errors: documented(422, "Invalid note"),
                request_schema: Some(note_body.to_string()),
                ..route(Method::Post, "/notes", "Write a note")
            },
            Route {
                errors: documented(404, "Note not found"),
                ..route(Method::Get, "/notes/{note_id}", "One note")
            },
            Route {
                requires_auth: true,
                ..route(Method::Get, "/me", "Who the caller is")
            },
        ]
    }

    fn dispatch(request: Request) -> Result<Answer, StoreError> {
        let notes = Notes {
            store: DatabaseStore,
            cache: PlatformCache,
            cache_ttl_seconds: cache_ttl_seconds(),
        };
        let caller = request.caller.map(|identity| Caller {
            user_id: identity.user_id,
            username: identity.username,
        });
        match (request.route_index, caller) {
            (0, _) => notes.latest(),
            (1, Some(caller)) => notes.write(&caller, &request.body),
            (2, _) => {
                let note_id = request
                    .params
                    .iter()
                    .find(|(name, _)| name == "note_id")
                    .map_or("", |(_, value)| value);
                match service::parse_note_id(note_id) {
                    Ok(note_id) => notes.one(note_id),
                    Err(refused) => Ok(refused),
                }
            }
            (3, Some(caller)) => {
                let greeting = config::get("greeting").unwrap_or_else(|| "Hello".to_string());
                Ok(service::whoami(&caller, &greeting))
            }
            // The host authenticates the routes that require it and passes only indexes of
            // `routes()`: anything else means the host and the component disagree.
            (index, caller) => Ok(internal_error(&format!(
                "route {index} (caller: {}) is not in the route table",
                caller.is_some()
            ))),
        }
    }

    fn cache_ttl_seconds() -> u32 {
        let configured = config::get("cache_ttl_seconds");
        match configured.as_deref().map(str::parse) {
            None => DEFAULT_CACHE_TTL_SECONDS,
            Some(Ok(seconds)) => seconds,
            Some(Err(_)) => {
                let warning = format!(
                    "cache_ttl_seconds {configured:?} is no number of seconds; \
                     using {DEFAULT_CACHE_TTL_SECONDS}"
                );
                logging::log(Level::Warn, &warning);
                DEFAULT_CACHE_TTL_SECONDS
            }
        }
    }

    /// The cause goes to the host's log, not to the caller.
    fn internal_error(cause: &str) -> Answer {
        logging::log(Level::Error, &format!("request failed: {cause}"));
        (500, json!({"detail": "Internal Server Error"}))
    }

    fn respond((status, body): Answer) -> Response {
        Response {
            status,
            headers: vec![("content-type".to_string(), "application/json".to_string())],
            body: body.to_string().into_bytes(),
        }
    }

    /// The notes table, through the platform's database capability.
    struct DatabaseStore;

    // The column order `note` reads the rows in.
    const LATEST_NOTES: &str =
        "SELECT id, user_id, username, text, created_at FROM notes ORDER BY id DESC LIMIT $1";
    const FIND_NOTE: &str =
        "SELECT id, user_id, username, text, created_at FROM notes WHERE id = $1";
    const INSERT_NOTE: &str = "INSERT INTO notes (user_id, username, text) VALUES ($1, $2, $3) \
         RETURNING id, user_id, username, text, created_at";

    impl From<DatabaseError> for StoreError {
        fn from(error: DatabaseError) -> Self {
            match error {
                DatabaseError::Unavailable(cause) => StoreError::Unavailable(cause),
                other => StoreError::Failed(other.to_string()),
            }
        }
    }

    /// A row of the columns the statements above select, in their order.
    fn note(row: &[Value]) -> Result<Note, StoreError> {
        use Value::{Int, Text, Timestamp};
        let [Int(id), Int(user_id), Text(username), Text(text), Timestamp(created_at)] = row else {
            return Err(StoreError::Failed(format!("not a note: {row:?}")));
        };
        Ok(Note {
            id: *id,
            user_id: *user_id,
            username: username.clone(),
            text: text.clone(),
            created_at: created_at.clone(),
        })
    }

    fn notes(rows: &database::Rows) -> Result<Vec<Note>, StoreError> {
        rows.values.iter().map(|row| note(row)).collect()
    }

    impl Store for DatabaseStore {
        fn latest_notes(&self, limit: i64) -> Result<Vec<Note>, StoreError> {
            notes(&database::query(LATEST_NOTES, &[Value::Int(limit)])?)
        }

        fn find_note(&self, note_id: i64) -> Result<Option<Note>, StoreError> {
            Ok(notes(&database::query(FIND_NOTE, &[Value::Int(note_id)])?)?.pop())
        }

        fn insert_note(
            &self,
            user_id: i64,
            username: &str,
            text: &str,
        ) -> Result<Note, StoreError> {
            let params = [
                Value::Int(user_id),
                Value::Text(username.to_string()),
                Value::Text(text.to_string()),
            ];
            notes(&database::query(INSERT_NOTE, &params)?)?
                .pop()
                .ok_or_else(|| StoreError::Failed("INSERT ... RETURNING returned no row".into()))
        }
    }

    /// The platform's cache; when it is unavailable, reads go to the database.
    struct PlatformCache;

    impl Cache for PlatformCache {
        fn get(&self, key: &str) -> Option<Vec<u8>> {
            // Not logged: a miss is followed by a `set`, whose failure says why.
            cache::get(key).ok().flatten()
        }

        fn set(&self, key: &str, value: &[u8], ttl_seconds: u32) {
            if let Err(error) = cache::set(key, value, Some(ttl_seconds)) {
                logging::log(Level::Warn, &format!("cache set failed: {error}"));
            }
        }

        fn delete(&self, key: &str) {
            // A stale list of notes would stay until its TTL runs out: worth a warning.
            if let Err(error) = cache::delete(key) {
                logging::log(Level::Warn, &format!("cache delete failed: {error}"));
            }
        }
    }

    struct Component;

    impl http_handler::Guest for Component {
        fn routes() -> Vec<Route> {
            routes()
        }

        fn handle(request: Request) -> Response {
            match dispatch(request) {
                Ok(answer) => respond(answer),
                Err(StoreError::Unavailable(_)) => {
                    let detail = json!({"detail": "Database unavailable, retry later"});
                    let mut response = respond((503, detail));
                    response
                        .headers
                        .push(("retry-after".to_string(), "1".to_string()));
                    response
                }
                Err(StoreError::Failed(cause)) => respond(internal_error(&cause)),
            }
        }

        fn health() -> Result<(), String> {
            database::query("SELECT 1", &[])
                .map(|_| ())
                .map_err(|error| format!("database: {error}"))
        }
    }

    impl message_handler::Guest for Component {
        fn handle_message(delivery: Delivery) -> Outcome {
            // A stub: subscribe the service in platform.toml, then handle the events here.
            logging::log(
                Level::Info,
                &format!(
                    "{} from {}, attempt {}",
                    delivery.message.routing_key, delivery.queue, delivery.attempt
                ),
            );
            Outcome::Ack
        }
    }

    impl scheduled_handler::Guest for Component {
        fn run(name: String) -> Result<(), String> {
            Err(format!("no schedule named {name}"))
        }
    }

    export!(Component);
}
