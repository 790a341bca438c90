//! Environment overrides of `platform.toml`: backend URLs, secrets, the knobs the FastAPI
//! design read from its environment, and `PLATFORM_<SERVICE>_<KEY>` for service values.

use super::{ConfigError, PlatformConfig};

impl PlatformConfig {
    /// Environment overrides: backend URLs, secrets and the knobs the FastAPI design read
    /// from its environment, plus `PLATFORM_<SERVICE>_<KEY>` for service config values.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(bind) = env("PLATFORM_BIND") {
            self.host.bind = bind;
        }
        // An empty URL in the environment means "embedded", like an absent one.
        let url = |name: &str| env(name).map(|url| url.trim().to_string());
        if let Some(database) = url("DATABASE_URL") {
            self.database.url = Some(database).filter(|url| !url.is_empty());
        }
        if let Some(cache) = url("REDIS_URL") {
            self.cache.url = Some(cache).filter(|url| !url.is_empty());
        }
        if let Some(broker) = url("AMQP_URL") {
            self.messaging.url = Some(broker).filter(|url| !url.is_empty());
        }
        self.identity.jwt_secret = env("JWT_SECRET").filter(|secret| !secret.is_empty());
        self.admin.token = env("PLATFORM_ADMIN_TOKEN").filter(|token| !token.is_empty());
        if let Some(dir) = env("PLATFORM_STATE_DIR").filter(|dir| !dir.trim().is_empty()) {
            self.state.dir = dir.trim().into();
        }
        if let Some(fleet) = env("PLATFORM_FLEET") {
            self.fleet.name = Some(fleet.trim().to_string()).filter(|name| !name.is_empty());
        }
        if let Some(host) = env("PLATFORM_HOST_NAME") {
            self.fleet.host = Some(host.trim().to_string()).filter(|name| !name.is_empty());
        }
        if let Some(bind) = env("PLATFORM_ADMIN_BIND") {
            self.admin.bind = bind;
        }
        if let Some(minutes) = env("ACCESS_TOKEN_EXPIRE_MINUTES") {
            self.identity.access_token_expire_minutes = minutes.parse().map_err(|_| {
                ConfigError::Invalid(format!(
                    "ACCESS_TOKEN_EXPIRE_MINUTES must be a number of minutes, got `{minutes}`"
                ))
            })?;
        }
        let tracing = &mut self.tracing;
        let set = |value: Option<String>, into: &mut Option<String>| {
            if let Some(value) = value.map(|value| value.trim().to_string()) {
                *into = Some(value).filter(|value| !value.is_empty());
            }
        };
        set(env("OTEL_EXPORTER_OTLP_ENDPOINT"), &mut tracing.endpoint);
        set(
            env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            &mut tracing.traces_endpoint,
        );
        set(
            env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL")),
            &mut tracing.protocol,
        );
        set(env("OTEL_TRACES_SAMPLER"), &mut tracing.sampler);
        if let Some(ratio) = env("OTEL_TRACES_SAMPLER_ARG") {
            tracing.sampler_arg = Some(ratio.trim().parse().map_err(|_| {
                ConfigError::Invalid(format!(
                    "OTEL_TRACES_SAMPLER_ARG must be a ratio from 0 to 1, got `{ratio}`"
                ))
            })?);
        }
        let max_retry = env("MAX_RETRY_ATTEMPTS")
            .map(|value| {
                value.parse::<u32>().map_err(|_| {
                    ConfigError::Invalid(format!(
                        "MAX_RETRY_ATTEMPTS must be a number, got `{value}`"
                    ))
                })
            })
            .transpose()?;
        for (name, service) in &mut self.services {
            if let Some(max_retry) = max_retry {
                for subscription in &mut service.subscriptions {
                    subscription.max_retry_attempts = max_retry;
                }
            }
            for (key, value) in &mut service.config {
                let variable = format!("PLATFORM_{name}_{key}")
                    .to_uppercase()
                    .replace('-', "_");
                if let Some(overridden) = env(&variable) {
                    *value = overridden;
                }
            }
        }
        Ok(())
    }
}
