//! The embedded broker used when no RabbitMQ is configured: the topology the platform
//! declares on RabbitMQ (topic / direct / fanout exchanges, durable queues bound by
//! routing-key patterns, a dead-letter queue per subscription), in the host's process.
//!
//! Every message is written to a SQLite file in the state directory before its publish is
//! confirmed, and deleted only when its handler acknowledges it (or moved to the
//! dead-letter queue). Whatever was published and not yet acknowledged is delivered again
//! after a restart: delivery is at least once, like RabbitMQ's, and handlers are
//! idempotent for the same reason.
//!
//! The topology is fixed at start from `platform.toml` (exchanges and subscriptions), so
//! publishing reads it without locks. Queues with a consumer keep their ready messages in
//! memory as well; the others (dead-letter queues) only on disk.

use super::{
    Broker, ConsumeError, Consumer, DeadLetter, Delivery, Message, PublishError, Settle, Settler,
    DEAD_LETTER_BATCH,
};
use crate::config::{ExchangeConfig, ExchangeKindConfig, SubscriptionConfig};
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Why the embedded broker could not open its store.
#[derive(Debug, thiserror::Error)]
#[error("embedded broker store {path}: {source}")]
pub struct OpenBrokerError {
    path: PathBuf,
    source: sqlx::Error,
}

/// A message taken from a queue, until it is settled.
#[derive(Debug, Clone)]
struct Envelope {
    /// Its row in the store.
    pub id: i64,
    pub message: Message,
    /// Failed deliveries before this one (the handler's `retry` answers).
    pub retries: u32,
    /// When a delivery of it first failed, in milliseconds since the Unix epoch.
    pub first_failed_at: Option<i64>,
    /// Why it was dead-lettered, while it is a dead letter.
    pub dead_letter_reason: Option<String>,
}

/// A queue that has a consumer: its ready messages, oldest first.
#[derive(Default)]
struct ReadyQueue {
    ready: Mutex<VecDeque<Envelope>>,
    available: Notify,
}

impl ReadyQueue {
    fn push(&self, envelope: Envelope) {
        self.ready
            .lock()
            .expect("a queue lock is never poisoned")
            .push_back(envelope);
        self.available.notify_one();
    }

    /// The next ready message, waiting for one if there is none.
    async fn next(&self) -> Envelope {
        loop {
            // Registered before looking, so a push between the look and the wait wakes us.
            let available = self.available.notified();
            if let Some(envelope) = self
                .ready
                .lock()
                .expect("a queue lock is never poisoned")
                .pop_front()
            {
                return envelope;
            }
            available.await;
        }
    }

    /// Messages waiting for the consumer.
    fn len(&self) -> usize {
        self.ready
            .lock()
            .expect("a queue lock is never poisoned")
            .len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Binding {
    exchange: String,
    /// The binding's routing key (or topic pattern), split into words once, at start.
    pattern: Vec<String>,
    queue: String,
}

/// Cheap to clone: a delivery keeps one to settle itself.
#[derive(Clone)]
pub struct EmbeddedBroker {
    store: SqlitePool,
    topology: Arc<Topology>,
}

/// Fixed at start from `platform.toml`.
struct Topology {
    exchanges: HashMap<String, ExchangeKindConfig>,
    bindings: Vec<Binding>,
    consumed: HashMap<String, Arc<ReadyQueue>>,
}

impl EmbeddedBroker {
    /// Opens the store at `path` (created if missing), declares the exchanges and the
    /// subscriptions' queues and bindings, and loads the messages still waiting in them.
    pub async fn open(
        path: &Path,
        exchanges: &[ExchangeConfig],
        subscriptions: &[SubscriptionConfig],
    ) -> Result<EmbeddedBroker, OpenBrokerError> {
        let open_error = |source| OpenBrokerError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|error| open_error(error.into()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A confirmed publish is on disk.
            .synchronous(SqliteSynchronous::Full);
        // One connection: the store's writes are serialised anyway, and never wait on
        // a lock held by another connection of ours.
        let store = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(open_error)?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS messages (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                queue TEXT NOT NULL,
                exchange TEXT NOT NULL,
                routing_key TEXT NOT NULL,
                content_type TEXT,
                headers TEXT NOT NULL,
                payload BLOB NOT NULL,
                retries INTEGER NOT NULL DEFAULT 0,
                first_failed_at INTEGER
            )",
        )
        .execute(&store)
        .await
        .map_err(open_error)?;
        // Stores written before a column existed gain it.
        for (column, kind) in [
            ("first_failed_at", "INTEGER"),
            ("dead_letter_reason", "TEXT"),
        ] {
            add_missing_column(&store, column, kind)
                .await
                .map_err(open_error)?;
        }
        sqlx::query("CREATE INDEX IF NOT EXISTS messages_queue_id ON messages (queue, id)")
            .execute(&store)
            .await
            .map_err(open_error)?;

        let mut bindings = Vec::new();
        let mut consumed = HashMap::new();
        for subscription in subscriptions {
            for pattern in &subscription.routing_keys {
                bindings.push(Binding {
                    exchange: subscription.exchange.clone(),
                    pattern: words(pattern).map(str::to_string).collect(),
                    queue: subscription.queue.clone(),
                });
            }
            let queue = Arc::new(ReadyQueue::default());
            for envelope in stored(&store, &subscription.queue)
                .await
                .map_err(open_error)?
            {
                queue.push(envelope);
            }
            if !queue.is_empty() {
                tracing::info!(queue = %subscription.queue, waiting = queue.len(), "embedded broker: messages from before the restart will be delivered");
            }
            consumed.insert(subscription.queue.clone(), queue);
        }
        Ok(EmbeddedBroker {
            store,
            topology: Arc::new(Topology {
                exchanges: exchanges
                    .iter()
                    .map(|exchange| (exchange.name.clone(), exchange.kind))
                    .collect(),
                bindings,
                consumed,
            }),
        })
    }

    /// The ready messages of a subscription's queue.
    fn queue(&self, name: &str) -> Option<&Arc<ReadyQueue>> {
        self.topology.consumed.get(name)
    }

    /// The queues a message published to `exchange` with `routing_key` lands in, each once.
    fn route(&self, exchange: &str, kind: ExchangeKindConfig, routing_key: &str) -> Vec<&str> {
        let key: Vec<&str> = words(routing_key).collect();
        let mut queues: Vec<&str> = Vec::new();
        for binding in self
            .topology
            .bindings
            .iter()
            .filter(|b| b.exchange == exchange)
        {
            let matches = match kind {
                ExchangeKindConfig::Topic => topic_matches(&binding.pattern, &key),
                ExchangeKindConfig::Direct => binding.pattern.iter().eq(key.iter()),
                ExchangeKindConfig::Fanout => true,
                // Refused when the configuration is loaded: only RabbitMQ routes on headers.
                ExchangeKindConfig::Headers => false,
            };
            if matches && !queues.contains(&binding.queue.as_str()) {
                queues.push(&binding.queue);
            }
        }
        queues
    }

    /// The handler acknowledged the message: it is gone.
    async fn ack(&self, envelope: &Envelope) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM messages WHERE id = $1")
            .bind(envelope.id)
            .execute(&self.store)
            .await
            .map(|_| ())
    }

    /// The message goes to the back of `queue` after `delay`, counted if `counted`, with
    /// the time of its first failure.
    async fn retry(
        &self,
        queue: &str,
        mut envelope: Envelope,
        delay: std::time::Duration,
        counted: bool,
    ) -> Result<(), sqlx::Error> {
        let failures = super::Failures {
            retries: envelope.retries,
            first_failed_at: envelope.first_failed_at.and_then(super::from_epoch_millis),
        };
        let (retries, first_failed_at) = failures.after_retry(counted);
        let first_failed_at = super::epoch_millis(first_failed_at);
        let recorded =
            sqlx::query("UPDATE messages SET retries = $2, first_failed_at = $3 WHERE id = $1")
                .bind(envelope.id)
                .bind(i64::from(retries))
                .bind(first_failed_at)
                .execute(&self.store)
                .await;
        // Even if the count was not written, the message is retried (and, as it is still
        // stored, delivered after a restart, at once).
        envelope.retries = retries;
        envelope.first_failed_at = Some(first_failed_at);
        if let Some(ready) = self.queue(queue).cloned() {
            if delay.is_zero() {
                ready.push(envelope);
            } else {
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    ready.push(envelope);
                });
            }
        }
        recorded.map(|_| ())
    }

    /// The message moves to `dead_letter_queue`, kept on disk for an operator.
    async fn dead_letter(
        &self,
        dead_letter_queue: &str,
        envelope: Envelope,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE messages SET queue = $1, dead_letter_reason = $3 WHERE id = $2")
            .bind(dead_letter_queue)
            .bind(envelope.id)
            .bind(super::bounded_reason(reason))
            .execute(&self.store)
            .await?;
        if let Some(ready) = self.queue(dead_letter_queue) {
            ready.push(envelope);
        }
        Ok(())
    }
}

/// Adds `column` to the messages table if a store written by an older host lacks it.
async fn add_missing_column(
    store: &SqlitePool,
    column: &str,
    kind: &str,
) -> Result<(), sqlx::Error> {
    let present: bool = sqlx::query_scalar(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('messages') WHERE name = $1",
    )
    .bind(column)
    .fetch_one(store)
    .await?;
    if !present {
        sqlx::query(&format!("ALTER TABLE messages ADD COLUMN {column} {kind}"))
            .execute(store)
            .await?;
    }
    Ok(())
}

/// The messages stored for `queue`, oldest first: ready, being handled, or dead letters.
async fn stored(store: &SqlitePool, queue: &str) -> Result<Vec<Envelope>, sqlx::Error> {
    sqlx::query(
        "SELECT id, exchange, routing_key, content_type, headers, payload, retries, \
         first_failed_at, dead_letter_reason FROM messages WHERE queue = $1 ORDER BY id",
    )
    .bind(queue)
    .fetch_all(store)
    .await?
    .iter()
    .map(envelope_from_row)
    .collect()
}

fn envelope_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Envelope, sqlx::Error> {
    let headers: String = row.try_get("headers")?;
    let headers: Vec<(String, String)> =
        serde_json::from_str(&headers).map_err(|error| sqlx::Error::Decode(error.into()))?;
    Ok(Envelope {
        id: row.try_get("id")?,
        message: Message {
            exchange: row.try_get("exchange")?,
            routing_key: row.try_get("routing_key")?,
            payload: row.try_get("payload")?,
            content_type: row.try_get("content_type")?,
            headers,
        },
        retries: row
            .try_get::<i64, _>("retries")?
            .try_into()
            .unwrap_or(u32::MAX),
        first_failed_at: row.try_get("first_failed_at")?,
        dead_letter_reason: row.try_get("dead_letter_reason")?,
    })
}

#[async_trait]
impl Broker for EmbeddedBroker {
    async fn publish(&self, message: Message) -> Result<(), PublishError> {
        let Some(&kind) = self.topology.exchanges.get(&message.exchange) else {
            // What RabbitMQ answers too (404 NOT_FOUND on the channel).
            return Err(PublishError::Rejected(format!(
                "no exchange `{}` is declared",
                message.exchange
            )));
        };
        let queues = self.route(&message.exchange, kind, &message.routing_key);
        if queues.is_empty() {
            // Unroutable: refused, as RabbitMQ returns a mandatory message, so that the
            // publisher keeps it (an outbox row) instead of believing it delivered.
            return Err(PublishError::Rejected(format!(
                "no queue is bound to `{}` for routing key `{}`",
                message.exchange, message.routing_key
            )));
        }
        let headers =
            serde_json::to_string(&message.headers).expect("string pairs always serialise");
        let unavailable = |error: sqlx::Error| PublishError::Unavailable(error.to_string());
        let mut transaction = self.store.begin().await.map_err(unavailable)?;
        let mut stored = Vec::with_capacity(queues.len());
        for queue in &queues {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO messages (queue, exchange, routing_key, content_type, headers, payload) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(queue)
            .bind(&message.exchange)
            .bind(&message.routing_key)
            .bind(&message.content_type)
            .bind(&headers)
            .bind(&message.payload)
            .fetch_one(&mut *transaction)
            .await
            .map_err(unavailable)?;
            stored.push((*queue, id));
        }
        transaction.commit().await.map_err(unavailable)?;
        for (queue, id) in stored {
            if let Some(ready) = self.queue(queue) {
                ready.push(Envelope {
                    id,
                    message: message.clone(),
                    retries: 0,
                    first_failed_at: None,
                    dead_letter_reason: None,
                });
            }
        }
        Ok(())
    }

    async fn consume(
        &self,
        subscription: &SubscriptionConfig,
    ) -> Result<Box<dyn Consumer>, ConsumeError> {
        let ready = self.queue(&subscription.queue).cloned().ok_or_else(|| {
            ConsumeError(format!(
                "the embedded broker has no queue `{}`",
                subscription.queue
            ))
        })?;
        Ok(Box::new(EmbeddedConsumer {
            broker: self.clone(),
            ready,
            queue: subscription.queue.clone(),
            dead_letter_queue: subscription.dead_letter_queue.clone(),
        }))
    }

    async fn dead_letters(
        &self,
        subscription: &SubscriptionConfig,
    ) -> Result<Vec<DeadLetter>, ConsumeError> {
        let rows = stored(&self.store, &subscription.dead_letter_queue)
            .await
            .map_err(|error| ConsumeError(error.to_string()))?;
        Ok(rows
            .into_iter()
            .take(DEAD_LETTER_BATCH)
            .map(|envelope| DeadLetter {
                id: envelope.id.to_string(),
                message: envelope.message,
                retries: envelope.retries,
                reason: envelope.dead_letter_reason,
            })
            .collect())
    }

    async fn replay(
        &self,
        subscription: &SubscriptionConfig,
        id: Option<&str>,
    ) -> Result<usize, ConsumeError> {
        let failed = |error: sqlx::Error| ConsumeError(error.to_string());
        let wanted = match id {
            Some(id) => Some(
                id.parse::<i64>()
                    .map_err(|_| ConsumeError(format!("`{id}` is not a dead letter's id")))?,
            ),
            None => None,
        };
        let dead = stored(&self.store, &subscription.dead_letter_queue)
            .await
            .map_err(failed)?;
        let mut replayed = 0;
        for mut envelope in dead
            .into_iter()
            .filter(|envelope| wanted.is_none_or(|id| id == envelope.id))
            .take(DEAD_LETTER_BATCH)
        {
            sqlx::query(
                "UPDATE messages SET queue = $1, retries = 0, first_failed_at = NULL, \
                 dead_letter_reason = NULL WHERE id = $2",
            )
            .bind(&subscription.queue)
            .bind(envelope.id)
            .execute(&self.store)
            .await
            .map_err(failed)?;
            envelope.retries = 0;
            envelope.first_failed_at = None;
            envelope.dead_letter_reason = None;
            if let Some(ready) = self.queue(&subscription.queue) {
                ready.push(envelope);
            }
            replayed += 1;
        }
        Ok(replayed)
    }
}

/// A subscription's consumer: takes the queue's ready messages; never disconnects.
struct EmbeddedConsumer {
    broker: EmbeddedBroker,
    ready: Arc<ReadyQueue>,
    queue: String,
    dead_letter_queue: String,
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        let envelope = self.ready.next().await;
        Some(Delivery {
            message: envelope.message,
            retries: envelope.retries,
            first_failed_at: envelope.first_failed_at.and_then(super::from_epoch_millis),
            broker_id: format!("message-{}", envelope.id),
            settler: Box::new(EmbeddedSettler {
                broker: self.broker.clone(),
                id: envelope.id,
                queue: self.queue.clone(),
                dead_letter_queue: self.dead_letter_queue.clone(),
            }),
        })
    }

    async fn close(self: Box<Self>) {}
}

struct EmbeddedSettler {
    broker: EmbeddedBroker,
    id: i64,
    queue: String,
    dead_letter_queue: String,
}

#[async_trait]
impl Settler for EmbeddedSettler {
    async fn settle(
        self: Box<Self>,
        settle: Settle,
        message: Message,
        failures: super::Failures,
    ) -> Result<(), ConsumeError> {
        let envelope = Envelope {
            id: self.id,
            message,
            retries: failures.retries,
            first_failed_at: failures.first_failed_at.map(super::epoch_millis),
            dead_letter_reason: None,
        };
        let settled = match settle {
            Settle::Ack => self.broker.ack(&envelope).await,
            Settle::Retry { delay, counted } => {
                self.broker
                    .retry(&self.queue, envelope, delay, counted)
                    .await
            }
            Settle::DeadLetter { reason } => {
                self.broker
                    .dead_letter(&self.dead_letter_queue, envelope, &reason)
                    .await
            }
        };
        settled.map_err(|error| ConsumeError(error.to_string()))
    }
}

/// The `.`-separated words of a routing key or binding pattern (none for an empty key).
fn words(routing_key: &str) -> impl Iterator<Item = &str> {
    routing_key
        .split('.')
        .filter(move |_| !routing_key.is_empty())
}

/// AMQP topic matching over words: `*` stands for exactly one word and `#` for zero or
/// more.
fn topic_matches(pattern: &[String], key: &[&str]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((word, rest)) if word == "#" => {
            (0..=key.len()).any(|skip| topic_matches(rest, &key[skip..]))
        }
        Some((word, rest)) => match key.split_first() {
            Some((first, key_rest)) => {
                (word == "*" || word == first) && topic_matches(rest, key_rest)
            }
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns_match_like_rabbitmq() {
        let cases = [
            ("order.created", "order.created", true),
            ("order.created", "order.cancelled", false),
            ("order.*", "order.created", true),
            ("order.*", "order.created.eu", false),
            ("order.*", "order", false),
            ("*.created", "order.created", true),
            ("order.#", "order", true),
            ("order.#", "order.created.eu", true),
            ("#", "anything.at.all", true),
            ("#", "", true),
            ("#.eu", "order.created.eu", true),
            ("#.eu", "order.created.us", false),
            ("order.#.eu", "order.eu", true),
            ("order.#.eu", "order.a.b.eu", true),
            ("*.*", "a.b", true),
            ("*.*", "a", false),
            ("order.created", "order.createdx", false),
        ];
        for (pattern, key, expected) in cases {
            let pattern_words: Vec<String> = words(pattern).map(str::to_string).collect();
            let key_words: Vec<&str> = words(key).collect();
            assert_eq!(
                topic_matches(&pattern_words, &key_words),
                expected,
                "{pattern} ~ {key}"
            );
        }
    }

    fn subscription(queue: &str, exchange: &str, keys: &[&str]) -> SubscriptionConfig {
        SubscriptionConfig {
            queue: queue.into(),
            exchange: exchange.into(),
            routing_keys: keys.iter().map(|k| k.to_string()).collect(),
            dead_letter_queue: format!("{queue}.dlq"),
            prefetch: 4,
            max_retry_attempts: 3,
            retry_delay_ms: 100,
            max_retry_delay_ms: 1_000,
            max_retry_age_seconds: 60,
        }
    }

    fn exchanges() -> Vec<ExchangeConfig> {
        vec![
            ExchangeConfig {
                name: "events".into(),
                kind: ExchangeKindConfig::Topic,
            },
            ExchangeConfig {
                name: "direct".into(),
                kind: ExchangeKindConfig::Direct,
            },
            ExchangeConfig {
                name: "all".into(),
                kind: ExchangeKindConfig::Fanout,
            },
        ]
    }

    fn subscriptions() -> Vec<SubscriptionConfig> {
        vec![
            subscription("orders", "events", &["order.*", "order.created"]),
            subscription("everything", "events", &["#"]),
            subscription("exact", "direct", &["order.created"]),
            subscription("fan", "all", &["ignored"]),
        ]
    }

    fn message(exchange: &str, routing_key: &str, body: &str) -> Message {
        Message {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            payload: body.as_bytes().to_vec(),
            content_type: Some("application/json".into()),
            headers: vec![("event_id".into(), body.into())],
        }
    }

    async fn open(dir: &tempfile::TempDir) -> EmbeddedBroker {
        EmbeddedBroker::open(
            &dir.path().join("broker.sqlite"),
            &exchanges(),
            &subscriptions(),
        )
        .await
        .unwrap()
    }

    fn ready(broker: &EmbeddedBroker, queue: &str) -> Vec<String> {
        let queue = broker.queue(queue).unwrap();
        let ready = queue.ready.lock().unwrap();
        ready
            .iter()
            .map(|e| String::from_utf8(e.message.payload.clone()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn routes_by_exchange_kind_and_pattern_once_per_queue() {
        let dir = tempfile::tempdir().unwrap();
        let broker = open(&dir).await;
        broker
            .publish(message("events", "order.created", "a"))
            .await
            .unwrap();
        broker
            .publish(message("events", "order.created.eu", "b"))
            .await
            .unwrap();
        broker
            .publish(message("events", "user.created", "c"))
            .await
            .unwrap();
        broker
            .publish(message("direct", "order.created", "d"))
            .await
            .unwrap();
        // Bound nowhere: refused, not silently dropped.
        assert!(matches!(
            broker
                .publish(message("direct", "order.cancelled", "e"))
                .await,
            Err(PublishError::Rejected(reason)) if reason.contains("no queue is bound")
        ));
        broker
            .publish(message("all", "whatever", "f"))
            .await
            .unwrap();
        // Bound twice (order.* and order.created), delivered once.
        assert_eq!(ready(&broker, "orders"), ["a"]);
        assert_eq!(ready(&broker, "everything"), ["a", "b", "c"]);
        assert_eq!(ready(&broker, "exact"), ["d"]);
        assert_eq!(ready(&broker, "fan"), ["f"]);
        assert!(matches!(
            broker.publish(message("nowhere", "x", "g")).await,
            Err(PublishError::Rejected(_))
        ));
    }

    #[tokio::test]
    async fn retry_then_dead_letter_keeps_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let broker = open(&dir).await;
        broker
            .publish(message("direct", "order.created", "m"))
            .await
            .unwrap();
        let queue = broker.queue("exact").unwrap();
        let first = queue.next().await;
        assert_eq!((first.retries, first.first_failed_at), (0, None));
        // The retry waits out its delay outside the queue: another message goes first.
        broker
            .retry("exact", first, std::time::Duration::from_millis(300), true)
            .await
            .unwrap();
        broker
            .publish(message("direct", "order.created", "n"))
            .await
            .unwrap();
        let waited = std::time::Instant::now();
        let other = queue.next().await;
        assert_eq!(other.message.payload, b"n");
        broker.ack(&other).await.unwrap();
        let second = queue.next().await;
        assert!(waited.elapsed() >= std::time::Duration::from_millis(250));
        assert_eq!(second.retries, 1);
        let first_failed_at = second.first_failed_at.expect("the failure's time is kept");
        // A redelivery after a transient failure is not counted and keeps the first time.
        broker
            .retry("exact", second, std::time::Duration::ZERO, false)
            .await
            .unwrap();
        let second = queue.next().await;
        assert_eq!(
            (second.retries, second.first_failed_at),
            (1, Some(first_failed_at))
        );
        let restored = stored(&broker.store, "exact").await.unwrap();
        assert_eq!(restored[0].first_failed_at, Some(first_failed_at));
        assert_eq!(
            second.message.headers,
            [("event_id".to_string(), "m".to_string())]
        );
        broker
            .dead_letter("exact.dlq", second, "handler said no")
            .await
            .unwrap();
        assert!(queue.is_empty());
        assert!(stored(&broker.store, "exact").await.unwrap().is_empty());
        let dead = stored(&broker.store, "exact.dlq").await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].message.payload, b"m");
        assert_eq!(dead[0].retries, 1);
        assert_eq!(
            dead[0].dead_letter_reason.as_deref(),
            Some("handler said no")
        );
    }

    #[tokio::test]
    async fn unacknowledged_messages_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let broker = open(&dir).await;
        for body in ["1", "2", "3"] {
            broker
                .publish(message("direct", "order.created", body))
                .await
                .unwrap();
        }
        let queue = broker.queue("exact").unwrap();
        // "1" is acknowledged, "2" is being handled when the host stops, "3" never started.
        let one = queue.next().await;
        broker.ack(&one).await.unwrap();
        let _in_flight = queue.next().await;
        broker.store.close().await;
        drop(broker);

        let reopened = open(&dir).await;
        assert_eq!(ready(&reopened, "exact"), ["2", "3"]);
        let queue = reopened.queue("exact").unwrap();
        let two = queue.next().await;
        assert_eq!(two.message.payload, b"2");
        assert_eq!(
            two.message.content_type.as_deref(),
            Some("application/json")
        );
        reopened.ack(&two).await.unwrap();
        let three = queue.next().await;
        reopened.ack(&three).await.unwrap();
        assert!(stored(&reopened.store, "exact").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_waiting_consumer_wakes_on_publish() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(open(&dir).await);
        let queue = broker.queue("fan").unwrap().clone();
        let consumer = tokio::spawn(async move { queue.next().await });
        tokio::task::yield_now().await;
        broker.publish(message("all", "", "late")).await.unwrap();
        let delivered = tokio::time::timeout(std::time::Duration::from_secs(5), consumer)
            .await
            .expect("the consumer was not woken")
            .unwrap();
        assert_eq!(delivered.message.payload, b"late");
    }
}
