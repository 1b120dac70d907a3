//! Configuration: `config/base.toml`, then the profile named by `INTAKE_ENV` (default `local`),
//! then `INTAKE__SECTION__KEY` environment variables, then `DATABASE_URL`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use intake_domain::{Limits, Scope, TenantId};
pub use intake_relay::RelaySettings;
use serde::Deserialize;

/// Every setting; `config/base.toml` documents each key.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// The profile that was loaded (`local`, `production`, …); not a file key.
    #[serde(skip)]
    pub environment: String,
    /// Listening and shutdown.
    pub server: ServerSettings,
    /// The database connection.
    pub database: DatabaseSettings,
    /// Request limits.
    pub limits: LimitSettings,
    /// How single events are grouped into statements.
    pub group_commit: GroupCommitConfig,
    /// Event schemas.
    pub schemas: SchemaSettings,
    /// The live debugger.
    pub debugger: DebuggerSettings,
    /// `intake relay`.
    pub relay: RelayConfig,
    /// How long events and keys are kept.
    pub retention: RetentionSettings,
    /// Authentication.
    pub auth: AuthSettings,
    /// Logging.
    pub log: LogSettings,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on; 0 picks a free one.
    pub port: u16,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Grace period for in-flight requests on SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Time a client has to send the request head.
    pub client_request_timeout_ms: u64,
    /// Time a client has to send the request body.
    pub client_body_timeout_ms: u64,
}

/// `[database]`
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// PostgreSQL URL.
    pub url: String,
    /// Pool size per process.
    pub max_connections: u32,
    /// Wait for a connection before answering 503.
    pub acquire_timeout_ms: u64,
}

impl DatabaseSettings {
    /// The pool settings for storage.
    pub fn pool(&self) -> intake_storage::PoolSettings {
        intake_storage::PoolSettings {
            max_connections: self.max_connections,
            acquire_timeout: Duration::from_millis(self.acquire_timeout_ms),
        }
    }
}

/// `[group_commit]`
#[derive(Debug, Clone, Deserialize)]
pub struct GroupCommitConfig {
    /// Writer tasks; 0 stores each single event with a statement of its own.
    pub writers: usize,
    /// The most events one statement stores.
    pub max_group: usize,
    /// The most events waiting for a writer before ingest answers 503.
    pub queue_bound: usize,
}

impl GroupCommitConfig {
    /// The settings for storage; `None` when group commit is off.
    pub fn settings(&self) -> Option<intake_storage::GroupCommitSettings> {
        (self.writers > 0).then_some(intake_storage::GroupCommitSettings {
            writers: self.writers,
            max_group: self.max_group,
            queue_bound: self.queue_bound,
        })
    }
}

/// `[retention]` (contract §14).
#[derive(Debug, Clone, Deserialize)]
pub struct RetentionSettings {
    /// Events received longer ago than this are removed; `0` keeps them forever.
    #[serde(deserialize_with = "duration")]
    pub events: Duration,
    /// A key is remembered at least this long after its event was received.
    #[serde(deserialize_with = "duration")]
    pub keys: Duration,
    /// Maintenance runs at least this often (and whenever something falls due).
    #[serde(deserialize_with = "duration")]
    pub maintenance_interval: Duration,
}

impl RetentionSettings {
    /// What storage keeps, and for how long.
    pub fn retention(&self) -> anyhow::Result<intake_domain::Retention> {
        if self.keys.is_zero() {
            bail!("retention.keys must be longer than 0 (the keys window is how retries are recognised)");
        }
        if self.maintenance_interval.is_zero() {
            bail!("retention.maintenance_interval must be longer than 0");
        }
        Ok(intake_domain::Retention {
            events: (!self.events.is_zero()).then_some(self.events),
            keys: self.keys,
        })
    }
}

/// A duration with a unit (`30d`, `12h`, `20s`, `500ms`, `1h 30m`), or `0`.
fn duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Number(0) => Ok(Duration::ZERO),
        Raw::Number(n) => Err(serde::de::Error::custom(format!(
            "{n} has no unit: write a duration such as {n}s, {n}m, {n}h or {n}d"
        ))),
        Raw::Text(text) if text.trim() == "0" => Ok(Duration::ZERO),
        Raw::Text(text) => humantime::parse_duration(text.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration ({e}); write e.g. 30d, 12h, 20s or 0"
            ))
        }),
    }
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
pub struct LimitSettings {
    /// Largest single-event body after decompression.
    pub max_body_bytes: usize,
    /// Largest batch body after decompression.
    pub max_batch_body_bytes: usize,
    /// About how many bytes of events' data a feed page holds at most (one event at least).
    pub max_feed_page_bytes: usize,
    /// Allowed clock skew for `occurred_at`, in seconds.
    pub max_future_skew: i64,
    /// Deepest nesting of `data`.
    pub max_data_depth: usize,
    /// A sender's clock off by more than this many seconds has its events corrected (§15).
    pub skew_correction_min: i64,
    /// Rate limits per token.
    pub rate: RateSettings,
}

/// Where token budgets are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateBackend {
    /// Each server counts alone.
    Memory,
    /// Every server sharing the Redis shares each token's budget.
    Redis,
    /// No limits at all (and no rate-limit fields): for measuring what limits cost.
    Off,
}

/// `[limits.rate]`
#[derive(Debug, Clone, Deserialize)]
pub struct RateSettings {
    /// `memory` or `redis`.
    pub backend: RateBackend,
    /// Events per second a token may send on average, unless it has a limit of its own.
    pub per_second: u32,
    /// The most events a token may send at once, unless it has a limit of its own.
    pub burst: u32,
    /// The Redis of the `redis` backend.
    pub redis_url: String,
    /// Prefix of the budgets' keys in Redis.
    pub redis_prefix: String,
}

impl RateSettings {
    /// The default limit.
    pub fn default_limit(&self) -> anyhow::Result<intake_domain::RateLimit> {
        intake_domain::RateLimit::new(self.per_second, self.burst)
            .ok_or_else(|| anyhow::anyhow!("limits.rate.per_second and burst must be at least 1"))
    }
}

impl LimitSettings {
    /// The limits the domain's validation applies.
    pub fn validation(&self) -> Limits {
        Limits {
            max_future_skew: chrono::Duration::seconds(self.max_future_skew),
            max_data_depth: self.max_data_depth,
            skew_correction_min: chrono::Duration::seconds(self.skew_correction_min),
        }
    }
}

/// `[relay]`: the relay's own settings, and the port `intake relay` answers on.
#[derive(Debug, Clone, Deserialize)]
pub struct RelayConfig {
    /// The port of the relay's `/healthz` and `/metrics`.
    pub metrics_port: u16,
    /// Every other key of the section: what `intake-relay` is told (NATS, the stream, pages,
    /// polling and claims).
    #[serde(flatten)]
    pub publish: RelaySettings,
}

/// `[schemas]`
#[derive(Debug, Clone, Deserialize)]
pub struct SchemaSettings {
    /// Largest schema document, as compact JSON.
    pub max_bytes: usize,
    /// Deepest nesting of a schema document.
    pub max_depth: usize,
    /// How often each server compares its cache with the database, beside the notifications.
    pub recheck_secs: u64,
    /// The longest a request waits for a heavy check of its event (and for a slot to run it
    /// in); past it, 422 schema-check-too-slow (503 overloaded when no slot came free).
    pub max_check_time_ms: u64,
    /// Heavy checks a server runs at once, each on a thread of its own.
    pub heavy_checks: usize,
}

impl SchemaSettings {
    /// The limits a schema document is held to.
    pub fn limits(&self) -> intake_domain::SchemaLimits {
        intake_domain::SchemaLimits {
            max_bytes: self.max_bytes,
            max_depth: self.max_depth,
            ..intake_domain::SchemaLimits::default()
        }
    }

    /// How long checks may take, and how many heavy ones run at once.
    pub fn check_budget(&self) -> intake_service::CheckBudget {
        intake_service::CheckBudget {
            max_time: Duration::from_millis(self.max_check_time_ms),
            heavy_at_once: self.heavy_checks,
        }
    }
}

/// `[debugger]`
#[derive(Debug, Clone, Deserialize)]
pub struct DebuggerSettings {
    /// Streams a server holds open at once (503 debugger-full past it).
    pub max_streams: usize,
    /// Streams one token may hold open at once (429 too-many-streams past it).
    pub max_streams_per_token: usize,
}

impl DebuggerSettings {
    /// The limits the debugger's hub applies.
    pub fn limits(&self) -> intake_service::debugger::StreamLimits {
        intake_service::debugger::StreamLimits {
            max_streams: self.max_streams,
            per_token: self.max_streams_per_token,
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// Lifetime of a cached token lookup.
    pub cache_ttl_ms: u64,
    /// Tokens from configuration (local profile only).
    pub dev_tokens: Vec<DevToken>,
}

/// One configured token.
#[derive(Clone, Deserialize)]
pub struct DevToken {
    /// The secret as clients send it.
    pub token: String,
    /// The tenant it acts for.
    pub tenant: String,
    /// Its scopes, by name.
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for DevToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevToken")
            .field("tenant", &self.tenant)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl DevToken {
    /// The tenant and scopes, checked.
    pub fn principal(&self) -> anyhow::Result<(TenantId, Vec<Scope>)> {
        let tenant = TenantId::parse(&self.tenant)?;
        let scopes = self.scopes.iter().map(|s| s.parse::<Scope>()).collect::<Result<_, _>>()?;
        Ok((tenant, scopes))
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    /// `pretty` or `json`.
    pub format: LogFormat,
    /// A tracing filter.
    pub filter: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Pretty,
    /// One JSON object a line.
    Json,
}

impl Settings {
    /// The folder with `base.toml` and the profiles: `INTAKE_CONFIG_DIR`, else `./config`.
    pub fn default_dir() -> PathBuf {
        std::env::var_os("INTAKE_CONFIG_DIR").map(PathBuf::from).unwrap_or_else(|| "config".into())
    }

    /// Loads the settings of the profile named by `INTAKE_ENV` (default `local`) from `dir`,
    /// with the environment's overrides.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let environment = std::env::var("INTAKE_ENV").unwrap_or_else(|_| "local".into());
        Self::load_profile(dir, &environment)
    }

    /// Loads the settings of `profile` from `dir`, with the environment's overrides.
    pub fn load_profile(dir: &Path, profile: &str) -> anyhow::Result<Self> {
        Self::load_with(dir, profile, None)
    }

    /// Like [`Settings::load_profile`], with `INTAKE__…` overrides from `variables` instead of
    /// the environment when given.
    fn load_with(
        dir: &Path,
        profile: &str,
        variables: Option<config::Map<String, String>>,
    ) -> anyhow::Result<Self> {
        let base = dir.join("base.toml");
        let profile_file = dir.join(format!("{profile}.toml"));
        if !base.is_file() {
            bail!("no {} (run from the project folder, or set INTAKE_CONFIG_DIR)", base.display());
        }
        if !profile_file.is_file() {
            bail!(
                "INTAKE_ENV={profile:?} has no profile file {}; profiles are local and production",
                profile_file.display()
            );
        }
        let settings = config::Config::builder()
            .add_source(config::File::from(base))
            .add_source(config::File::from(profile_file))
            .add_source(
                config::Environment::with_prefix("INTAKE")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(variables),
            )
            .set_override_option("database.url", std::env::var("DATABASE_URL").ok())?
            .build()
            .context("reading configuration")?;
        let mut settings: Settings =
            settings.try_deserialize().context("configuration has a bad value")?;
        settings.environment = profile.to_owned();
        Ok(settings)
    }

    /// Whether this is the production profile.
    pub fn is_production(&self) -> bool {
        self.environment == "production"
    }

    /// Refuses settings that must not run: dev tokens in production. (An unusable dev token is
    /// refused where tokens are parsed, by the authenticator.)
    pub fn check_for_serving(&self) -> anyhow::Result<()> {
        if self.is_production() && !self.auth.dev_tokens.is_empty() {
            bail!(
                "refusing to start: INTAKE_ENV=production with {} dev token(s) configured; dev \
                 tokens belong only to the local profile (create real ones with `intake tokens \
                 create`)",
                self.auth.dev_tokens.len()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_section_reads_into_the_relays_settings_with_overrides() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let variables = [
            ("INTAKE__RELAY__METRICS_PORT", "9999"),
            ("INTAKE__RELAY__PAGE_SIZE", "20"),
            ("INTAKE__RELAY__CLAIM_SECS", "1"),
            ("INTAKE__RELAY__STREAM", "INTAKE_TEST"),
        ];
        let variables = variables.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let settings = Settings::load_with(&dir, "local", Some(variables)).expect("settings");
        assert_eq!(settings.relay.metrics_port, 9999);
        let relay = &settings.relay.publish;
        assert_eq!(
            (relay.page_size, relay.claim_secs, relay.stream.as_str()),
            (20, 1, "INTAKE_TEST")
        );
        // The rest from config/base.toml.
        assert_eq!(relay.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(relay.subject_prefix, "intake");
        assert_eq!((relay.duplicate_window_secs, relay.poll_ms), (120, 200));
        assert_eq!(relay.max_page_bytes, 8 << 20, "8 MiB");
    }
}
