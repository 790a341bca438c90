//! What `platform.toml` must satisfy beyond its types: ports, names, grants that need a
//! setting, exchanges that exist, positive limits.

use super::{Capability, ConfigError, ExchangeKindConfig, PlatformConfig};
use std::collections::BTreeMap;

impl PlatformConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if self.services.is_empty() {
            return invalid("no [services.<name>] defined".into());
        }
        if self.state.history_limit == 0 {
            return invalid("state.history_limit must be at least 1".into());
        }
        if self.admin.max_upload_mb == 0 {
            return invalid("admin.max_upload_mb must be positive".into());
        }
        if self.cache.embedded_max_mb == 0 {
            return invalid("cache.embedded_max_mb must be positive".into());
        }
        if self.messaging.url.is_none() {
            if let Some(exchange) = self
                .messaging
                .exchanges
                .iter()
                .find(|e| e.kind == ExchangeKindConfig::Headers)
            {
                return invalid(format!(
                    "exchange `{}` is a headers exchange, which only RabbitMQ routes: set messaging.url (or AMQP_URL)",
                    exchange.name
                ));
            }
        }
        for (section, limits) in [
            ("host.connections", &self.host.connections),
            ("admin.connections", &self.admin.connections),
        ] {
            if limits.max_connections == 0
                || limits.header_timeout_seconds == 0
                || limits.max_header_bytes < 8192
                || limits.max_headers == 0
            {
                return invalid(format!(
                    "{section}: max_connections, header_timeout_seconds and max_headers must be positive, max_header_bytes at least 8192"
                ));
            }
        }
        if let Some(fleet) = &self.fleet.name {
            if !is_identifier(fleet) {
                return invalid(format!(
                    "fleet name `{fleet}` must be lower-case letters, digits, `-` or `_`"
                ));
            }
            if self.database.url.is_none() {
                return invalid(format!(
                    "fleet `{fleet}` keeps its deployments in PostgreSQL: set database.url (or DATABASE_URL)"
                ));
            }
            let fleet = &self.fleet;
            if fleet.heartbeat_seconds == 0
                || fleet.reconcile_seconds == 0
                || fleet.canary_window_seconds == 0
                || fleet.host_timeout_seconds <= fleet.heartbeat_seconds
            {
                return invalid("fleet: heartbeat_seconds, reconcile_seconds and canary_window_seconds must be positive, host_timeout_seconds above heartbeat_seconds".into());
            }
        }
        if self.identity.bcrypt_workers == Some(0) {
            return invalid("identity.bcrypt_workers must be positive".into());
        }
        if !(4..=31).contains(&self.identity.bcrypt_cost) {
            return invalid("identity.bcrypt_cost must be within 4..=31".into());
        }
        let mut ports = BTreeMap::new();
        for (name, service) in &self.services {
            if !is_identifier(name) {
                return invalid(format!(
                    "service name `{name}` must be lower-case letters, digits, `-` or `_`"
                ));
            }
            if let Some(other) = ports.insert(service.port, name) {
                return invalid(format!(
                    "services `{other}` and `{name}` both use port {}",
                    service.port
                ));
            }
            match (&service.database, service.is_granted(Capability::Database)) {
                (None, true) => {
                    return invalid(format!(
                        "service `{name}` is granted `database` but names no `database`"
                    ))
                }
                (Some(database), _) if !is_identifier(database) => {
                    return invalid(format!(
                        "database name `{database}` of service `{name}` must be lower-case letters, digits or `_`"
                    ))
                }
                _ => {}
            }
            if service.statement_timeout_ms == Some(0) || self.database.statement_timeout_ms == 0 {
                return invalid(format!(
                    "service `{name}`: statement timeouts must be positive"
                ));
            }
            if service.max_concurrent == 0 || service.queue_timeout_ms == 0 {
                return invalid(format!(
                    "service `{name}`: max_concurrent and queue_timeout_ms must be positive"
                ));
            }
            if service.instances.max_requests == 0 || service.instances.idle_timeout_seconds == 0 {
                return invalid(format!(
                    "service `{name}`: instances.max_requests and instances.idle_timeout_seconds must be positive"
                ));
            }
            if service.memory_limit_mb == 0 || service.request_timeout_ms == 0 {
                return invalid(format!(
                    "service `{name}`: memory_limit_mb and request_timeout_ms must be positive"
                ));
            }
            for exchange in &service.publish_exchanges {
                if !self.messaging.exchanges.iter().any(|e| &e.name == exchange) {
                    return invalid(format!(
                        "service `{name}` publishes to `{exchange}`, which [[messaging.exchanges]] does not declare"
                    ));
                }
            }
            let mut schedule_names = std::collections::BTreeSet::new();
            for schedule in &service.schedules {
                if !is_identifier(&schedule.name) || !schedule_names.insert(&schedule.name) {
                    return invalid(format!(
                        "service `{name}`: schedule names must be unique lowercase identifiers (`{}`)",
                        schedule.name
                    ));
                }
                if let Err(reason) = schedule.timing() {
                    return invalid(format!(
                        "service `{name}`, schedule `{}`: {reason}",
                        schedule.name
                    ));
                }
            }
            for subscription in &service.subscriptions {
                if !self
                    .messaging
                    .exchanges
                    .iter()
                    .any(|e| e.name == subscription.exchange)
                {
                    return invalid(format!(
                        "service `{name}` subscribes to `{}`, which [[messaging.exchanges]] does not declare",
                        subscription.exchange
                    ));
                }
                if subscription.prefetch == 0 || subscription.max_retry_attempts == 0 {
                    return invalid(format!(
                        "subscription `{}`: prefetch and max_retry_attempts must be positive",
                        subscription.queue
                    ));
                }
            }
        }
        Ok(())
    }
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}
