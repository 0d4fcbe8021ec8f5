//! Configuration: one typed tree, read from flags, the environment and `.env` (in that
//! order of precedence), checked once at start.
//!
//! A bad value is a [`ConfigError`] that names the variable, says what is wrong and shows a
//! good value; `main` prints it on one line and exits with code 2.

pub mod aggregation;
mod dead_letters;
pub mod delivery;
pub mod email;
pub mod limits;
pub mod mobile;
mod nats;
pub mod webpush;

pub use dead_letters::DeadLetterSettings;
pub use nats::{NatsAuth, NatsTls, Secret};
use nats::{parse_nats_auth, parse_nats_name, parse_nats_tls, parse_nats_urls};

use crate::store::{DynamoDbSettings, StoreSettings};
use clap::Args;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The groups `--help` shows the settings in; each command shows only the groups it uses
/// (see `cli::settings_used_by`).
pub mod heading {
    pub const GENERAL: &str = "General";
    pub const NATS: &str = "NATS";
    pub const STORE: &str = "Store";
    pub const WORKER: &str = "Worker";
    pub const HTTP: &str = "HTTP";
    pub const DEAD_LETTERS: &str = "Dead letters";
    pub const DELIVERY: &str = "Delivery";
    pub const LIMITS: &str = "Rate limits";
}

/// The settings as given, before they are checked. Every one is a flag and a variable.
/// (No `Debug`: it holds secrets in the clear. `--help` never shows their values.)
#[derive(Clone, Args)]
pub struct RawSettings {
    /// One or more comma-separated NATS server URLs.
    #[arg(
        long,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true,
        help_heading = heading::NATS
    )]
    pub nats_url: String,
    /// NATS credentials file (NGS / decentralised auth).
    #[arg(long, env = "NATS_CREDS_FILE", global = true, help_heading = heading::NATS)]
    pub nats_creds_file: Option<String>,
    /// NATS nkey seed file (a file holding the user's seed, `SU...`).
    #[arg(long, env = "NATS_NKEY_FILE", global = true, help_heading = heading::NATS)]
    pub nats_nkey_file: Option<String>,
    /// NATS user name (with NATS_PASSWORD).
    #[arg(long, env = "NATS_USER", global = true, help_heading = heading::NATS)]
    pub nats_user: Option<String>,
    /// NATS password (with NATS_USER).
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true, global = true, help_heading = heading::NATS)]
    pub nats_password: Option<String>,
    /// NATS authentication token.
    #[arg(long, env = "NATS_TOKEN", hide_env_values = true, global = true, help_heading = heading::NATS)]
    pub nats_token: Option<String>,
    /// CA certificate (PEM) to verify the NATS server with; turns TLS on.
    #[arg(long, env = "NATS_TLS_CA_FILE", global = true, help_heading = heading::NATS)]
    pub nats_tls_ca_file: Option<String>,
    /// Client certificate (PEM) for TLS client authentication; turns TLS on.
    #[arg(long, env = "NATS_TLS_CERT_FILE", global = true, help_heading = heading::NATS)]
    pub nats_tls_cert_file: Option<String>,
    /// Private key (PEM) of the client certificate.
    #[arg(long, env = "NATS_TLS_KEY_FILE", global = true, help_heading = heading::NATS)]
    pub nats_tls_key_file: Option<String>,
    /// `jetstream` (durable, at-least-once) or `core` (queue group, at-most-once).
    #[arg(long, env = "NATS_MODE", default_value = "jetstream", global = true, help_heading = heading::NATS)]
    pub nats_mode: String,
    /// JetStream stream, created when absent.
    #[arg(
        long,
        env = "NATS_STREAM",
        default_value = "NOTIFICATIONS",
        global = true,
        help_heading = heading::NATS
    )]
    pub nats_stream: String,
    /// Durable pull consumer shared by all replicas.
    #[arg(
        long,
        env = "NATS_CONSUMER",
        default_value = "notification-worker",
        global = true,
        help_heading = heading::NATS
    )]
    pub nats_consumer: String,
    /// `sqlite` or `dynamodb`; must be set explicitly in production.
    #[arg(long, env = "NOTIF_STORE", global = true, help_heading = heading::STORE)]
    pub notif_store: Option<String>,
    /// The embedded store's file.
    #[arg(
        long,
        env = "NOTIF_SQLITE_PATH",
        default_value = "./data/notifications.db",
        global = true,
        help_heading = heading::STORE
    )]
    pub notif_sqlite_path: String,
    /// Largest size of the SQLite WAL file (`64MiB`, `256MiB`, `1GiB`, or bytes); the
    /// writer checkpoints and truncates it before it gets there.
    #[arg(
        long,
        env = "NOTIF_SQLITE_WAL_MAX",
        default_value = "64MiB",
        global = true,
        help_heading = heading::STORE
    )]
    pub notif_sqlite_wal_max: String,
    /// DynamoDB table.
    #[arg(
        long,
        env = "NOTIF_TABLE_NAME",
        default_value = "exobook-notifications",
        global = true,
        help_heading = heading::STORE
    )]
    pub notif_table_name: String,
    /// DynamoDB table of the recipient directory (key owner).
    #[arg(
        long,
        env = "NOTIF_RECIPIENTS_TABLE",
        default_value = "exobook-notification-recipients",
        global = true,
        help_heading = heading::STORE
    )]
    pub notif_recipients_table: String,
    /// AWS region of the DynamoDB table.
    #[arg(
        long,
        env = "AWS_REGION",
        default_value = "ca-central-1",
        global = true,
        help_heading = heading::STORE
    )]
    pub aws_region: String,
    /// `development` or `production`.
    #[arg(
        long,
        env = "ENVIRONMENT",
        default_value = "development",
        global = true,
        help_heading = heading::GENERAL
    )]
    pub environment: String,
    /// Tracing filter, e.g. `info,notification_worker=debug`.
    #[arg(long, env = "LOG_LEVEL", default_value = "info", global = true, help_heading = heading::GENERAL)]
    pub log_level: String,
    /// `pretty` or `json` (default: pretty in development, json in production).
    #[arg(long, env = "LOG_FORMAT", global = true, help_heading = heading::GENERAL)]
    pub log_format: Option<String>,
    /// Store writes in flight at once.
    #[arg(
        long,
        env = "WORKER_CONCURRENCY",
        default_value = "64",
        global = true,
        help_heading = heading::WORKER
    )]
    pub worker_concurrency: String,
    /// How long removal records (tombstones) are kept: `30d`, `12h`, ... or `forever`. Must
    /// cover the stream's and the dead-letter stream's max age.
    #[arg(
        long,
        env = "NOTIF_TOMBSTONE_TTL",
        default_value = "30d",
        global = true,
        help_heading = heading::STORE
    )]
    pub notif_tombstone_ttl: String,
    /// Health and metrics listener address, or `off`.
    #[arg(
        long,
        env = "HTTP_ADDR",
        default_value = "127.0.0.1:8080",
        global = true,
        help_heading = heading::HTTP
    )]
    pub http_addr: String,
    /// Dead letters older than this are removed from NOTIFICATIONS_DLQ when the worker
    /// creates it (s, m, h or d).
    #[arg(
        long,
        env = "DLQ_MAX_AGE",
        default_value = dead_letters::DEFAULT_MAX_AGE,
        global = true,
        help_heading = heading::DEAD_LETTERS
    )]
    pub dlq_max_age: String,
    /// Size limit of NOTIFICATIONS_DLQ when the worker creates it (KiB, MiB, GiB, TiB, or
    /// unlimited); when full, new dead letters are refused and their events come back.
    #[arg(
        long,
        env = "DLQ_MAX_BYTES",
        default_value = dead_letters::DEFAULT_MAX_BYTES,
        global = true,
        help_heading = heading::DEAD_LETTERS
    )]
    pub dlq_max_bytes: String,
    #[command(flatten)]
    pub delivery: delivery::RawDelivery,
    #[command(flatten)]
    pub limits: limits::RawLimits,
    #[command(flatten)]
    pub aggregation: aggregation::RawAggregation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsMode {
    /// Durable pull consumer: at-least-once delivery, exactly-once effect.
    JetStream,
    /// Queue-group subscription: at-most-once, for servers without JetStream.
    Core,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct NatsSettings {
    pub urls: Vec<String>,
    pub auth: NatsAuth,
    pub tls: NatsTls,
    pub mode: NatsMode,
    pub stream: String,
    pub consumer: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub nats: NatsSettings,
    pub store: StoreSettings,
    pub environment: Environment,
    pub log_level: String,
    pub log_format: LogFormat,
    pub concurrency: usize,
    /// `None` when `HTTP_ADDR=off`.
    pub http_addr: Option<SocketAddr>,
    pub dead_letters: DeadLetterSettings,
    /// How long tombstones are kept ([`FOREVER`] for `forever`).
    pub tombstone_ttl: Duration,
    /// The delivery channels turned on, and their settings.
    pub delivery: crate::delivery::DeliverySettings,
    /// `NOTIFY_DEFAULTS`: email and push modes for people who chose none (issue 10; not
    /// used by the worker yet).
    pub notify_defaults: crate::recipients::NotifyDefaults,
    /// `RATE_LIMIT_*`: the limits creates must pass (docs/rate-limits.md).
    pub limits: crate::limits::LimitSettings,
    /// `AGGREGATE`: the actions whose creates fold into aggregates (docs/aggregation.md).
    pub aggregate: crate::domain::Aggregation,
}

/// `forever` as a duration: longer than any stream keeps anything.
pub const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// A value that cannot be used, said in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub variable: &'static str,
    /// The offending value, or `None` where it must not be printed or was not given.
    pub value: Option<String>,
    pub problem: String,
    pub example: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}={value:?}: {}", self.variable, self.problem)?,
            None => write!(f, "{}: {}", self.variable, self.problem)?,
        }
        write!(f, " (example: {}={})", self.variable, self.example)
    }
}

fn bad(
    variable: &'static str,
    value: &str,
    problem: impl Into<String>,
    example: &'static str,
) -> ConfigError {
    ConfigError {
        variable,
        value: Some(value.to_owned()),
        problem: problem.into(),
        example,
    }
}

/// Largest `WORKER_CONCURRENCY` accepted.
pub const MAX_CONCURRENCY: usize = 4096;

impl Config {
    pub fn from_raw(raw: &RawSettings) -> Result<Config, ConfigError> {
        let environment = match raw.environment.as_str() {
            "development" => Environment::Development,
            "production" => Environment::Production,
            other => {
                return Err(bad(
                    "ENVIRONMENT",
                    other,
                    "must be development or production",
                    "production",
                ));
            }
        };
        Ok(Config {
            nats: NatsSettings {
                urls: parse_nats_urls(&raw.nats_url)?,
                auth: parse_nats_auth(raw)?,
                tls: parse_nats_tls(raw)?,
                mode: match raw.nats_mode.as_str() {
                    "jetstream" => NatsMode::JetStream,
                    "core" => NatsMode::Core,
                    other => return Err(bad("NATS_MODE", other, "must be jetstream or core", "jetstream")),
                },
                stream: parse_nats_name("NATS_STREAM", &raw.nats_stream, "NOTIFICATIONS")?,
                consumer: parse_nats_name("NATS_CONSUMER", &raw.nats_consumer, "notification-worker")?,
            },
            store: parse_store(raw, environment)?,
            environment,
            log_level: parse_log_level(&raw.log_level)?,
            log_format: match raw.log_format.as_deref() {
                None => match environment {
                    Environment::Development => LogFormat::Pretty,
                    Environment::Production => LogFormat::Json,
                },
                Some("pretty") => LogFormat::Pretty,
                Some("json") => LogFormat::Json,
                Some(other) => return Err(bad("LOG_FORMAT", other, "must be pretty or json", "json")),
            },
            concurrency: parse_concurrency(&raw.worker_concurrency)?,
            http_addr: parse_http_addr(&raw.http_addr)?,
            dead_letters: dead_letters::parse(&raw.dlq_max_age, &raw.dlq_max_bytes)?,
            tombstone_ttl: match raw.notif_tombstone_ttl.trim() {
                "forever" => FOREVER,
                value => parse_duration("NOTIF_TOMBSTONE_TTL", value, "30d")?,
            },
            delivery: delivery::parse(&raw.delivery, environment)?,
            notify_defaults: delivery::parse_notify_defaults(&raw.delivery.notify_defaults)?,
            limits: limits::parse(&raw.limits)?,
            aggregate: aggregation::parse(&raw.aggregation)?,
        })
    }
}

fn parse_store(raw: &RawSettings, environment: Environment) -> Result<StoreSettings, ConfigError> {
    let kind = match (raw.notif_store.as_deref(), environment) {
        (Some(kind), _) => kind,
        (None, Environment::Development) => "sqlite",
        (None, Environment::Production) => {
            return Err(ConfigError {
                variable: "NOTIF_STORE",
                value: None,
                problem: "must be set explicitly in production".into(),
                example: "dynamodb",
            });
        }
    };
    match kind {
        "sqlite" => {
            if raw.notif_sqlite_path.is_empty() {
                return Err(bad(
                    "NOTIF_SQLITE_PATH",
                    "",
                    "must not be empty",
                    "./data/notifications.db",
                ));
            }
            Ok(StoreSettings::Sqlite {
                path: PathBuf::from(&raw.notif_sqlite_path),
                wal_max: parse_wal_max(&raw.notif_sqlite_wal_max)?,
            })
        }
        "dynamodb" => {
            let table = &raw.notif_table_name;
            let recipients_table = &raw.notif_recipients_table;
            for (name, value, example) in [
                ("NOTIF_TABLE_NAME", table, "exobook-notifications"),
                (
                    "NOTIF_RECIPIENTS_TABLE",
                    recipients_table,
                    "exobook-notification-recipients",
                ),
            ] {
                let table_ok = (3..=255).contains(&value.len())
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
                if !table_ok {
                    return Err(bad(
                        name,
                        value,
                        "must be 3 to 255 of a-z, A-Z, 0-9, '_', '-', '.'",
                        example,
                    ));
                }
            }
            if recipients_table == table {
                return Err(bad(
                    "NOTIF_RECIPIENTS_TABLE",
                    recipients_table,
                    "must not be the notifications table (NOTIF_TABLE_NAME): the API reads that table by owner",
                    "exobook-notification-recipients",
                ));
            }
            let region = &raw.aws_region;
            let region_ok = !region.is_empty()
                && region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !region_ok {
                return Err(bad(
                    "AWS_REGION",
                    region,
                    "is not an AWS region name",
                    "ca-central-1",
                ));
            }
            Ok(StoreSettings::DynamoDb(DynamoDbSettings {
                table: table.clone(),
                recipients_table: recipients_table.clone(),
                region: region.clone(),
            }))
        }
        other => Err(bad(
            "NOTIF_STORE",
            other,
            "must be sqlite or dynamodb",
            "dynamodb",
        )),
    }
}

/// A duration written as a whole number and a unit: `45s`, `15m`, `12h`, `30d`.
pub fn parse_duration(
    variable: &'static str,
    value: &str,
    example: &'static str,
) -> Result<Duration, ConfigError> {
    let value = value.trim();
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        _ => {
            return Err(bad(
                variable,
                value,
                "must be a whole number with a unit s, m, h or d",
                example,
            ));
        }
    };
    match number.parse::<u64>().ok().and_then(|n| n.checked_mul(seconds)) {
        Some(total) if total > 0 => Ok(Duration::from_secs(total)),
        _ => Err(bad(
            variable,
            value,
            "must be a positive whole number with a unit s, m, h or d",
            example,
        )),
    }
}

/// A size in bytes: `1048576`, `512KiB`, `100MiB`, `1GiB`, `2TiB`.
fn parse_size(value: &str) -> Option<u64> {
    let value = value.trim();
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(multiplier)
}

fn parse_wal_max(value: &str) -> Result<u64, ConfigError> {
    match parse_size(value) {
        Some(bytes) if bytes >= crate::store::MIN_WAL_MAX => Ok(bytes),
        _ => Err(bad(
            "NOTIF_SQLITE_WAL_MAX",
            value,
            "must be a size of at least 32MiB (bytes, or a number with KiB, MiB or GiB)",
            "64MiB",
        )),
    }
}

fn parse_log_level(value: &str) -> Result<String, ConfigError> {
    tracing_subscriber::EnvFilter::builder()
        .parse(value)
        .map(|_| value.to_owned())
        .map_err(|error| {
            bad(
                "LOG_LEVEL",
                value,
                format!("is not a tracing filter ({error})"),
                "info,notification_worker=debug",
            )
        })
}

fn parse_concurrency(value: &str) -> Result<usize, ConfigError> {
    match value.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(n),
        _ => Err(bad(
            "WORKER_CONCURRENCY",
            value,
            "must be a whole number from 1 to 4096",
            "64",
        )),
    }
}

fn parse_http_addr(value: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if value == "off" {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| {
        bad(
            "HTTP_ADDR",
            value,
            "must be an address with a port, or off",
            "0.0.0.0:8080",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented defaults, built by hand so that the machine's variables cannot leak in.
    fn raw() -> RawSettings {
        RawSettings {
            nats_url: "nats://127.0.0.1:4222".into(),
            nats_creds_file: None,
            nats_nkey_file: None,
            nats_user: None,
            nats_password: None,
            nats_token: None,
            nats_tls_ca_file: None,
            nats_tls_cert_file: None,
            nats_tls_key_file: None,
            nats_mode: "jetstream".into(),
            nats_stream: "NOTIFICATIONS".into(),
            nats_consumer: "notification-worker".into(),
            notif_store: None,
            notif_sqlite_path: "./data/notifications.db".into(),
            notif_sqlite_wal_max: "64MiB".into(),
            notif_table_name: "exobook-notifications".into(),
            notif_recipients_table: "exobook-notification-recipients".into(),
            aws_region: "ca-central-1".into(),
            environment: "development".into(),
            log_level: "info".into(),
            log_format: None,
            worker_concurrency: "64".into(),
            http_addr: "127.0.0.1:8080".into(),
            dlq_max_age: "7d".into(),
            dlq_max_bytes: "1GiB".into(),
            notif_tombstone_ttl: "30d".into(),
            delivery: delivery::RawDelivery::default(),
            limits: limits::RawLimits::default(),
            aggregation: aggregation::RawAggregation::default(),
        }
    }

    #[test]
    fn notify_defaults_are_typed_and_a_bad_one_names_the_variable() {
        use crate::recipients::{Channel, EventTypeName, Mode, NotifyDefaults, resolve_mode};
        let mut settings = raw();
        assert_eq!(
            Config::from_raw(&settings).unwrap().notify_defaults,
            NotifyDefaults::default()
        );
        settings.delivery.notify_defaults = "email=off,email.reply.post=instant".into();
        let defaults = Config::from_raw(&settings).unwrap().notify_defaults;
        let reply = EventTypeName::parse("reply.post").unwrap();
        assert_eq!(
            resolve_mode(&defaults, None, Channel::Email, &reply),
            Mode::Instant
        );
        settings.delivery.notify_defaults = "email=sometimes".into();
        let error = Config::from_raw(&settings).unwrap_err();
        assert_eq!(error.variable, "NOTIFY_DEFAULTS");
        let line = error.to_string();
        assert!(
            line.contains("not a mode") && line.contains("example: NOTIFY_DEFAULTS=email=digest"),
            "{line}"
        );
    }

    #[test]
    fn durations_take_a_unit_and_forever() {
        assert_eq!(parse_duration("X", "45s", "1s").unwrap(), Duration::from_secs(45));
        assert_eq!(
            parse_duration("X", "30d", "1s").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        for bad in ["", "30", "d", "0d", "-1d", "1.5h", "1w", "99999999999999999999d"] {
            assert!(parse_duration("X", bad, "1s").is_err(), "{bad:?}");
        }
        let mut settings = raw();
        settings.notif_tombstone_ttl = "forever".into();
        assert_eq!(Config::from_raw(&settings).unwrap().tombstone_ttl, FOREVER);
        settings.notif_tombstone_ttl = "a week".into();
        let error = Config::from_raw(&settings).unwrap_err();
        assert_eq!(error.variable, "NOTIF_TOMBSTONE_TTL");
    }

    fn error_with(change: impl FnOnce(&mut RawSettings)) -> ConfigError {
        let mut settings = raw();
        change(&mut settings);
        Config::from_raw(&settings).unwrap_err()
    }

    #[test]
    fn defaults_run_a_development_worker_on_sqlite() {
        let config = Config::from_raw(&raw()).unwrap();
        assert!(matches!(config.store, StoreSettings::Sqlite { .. }));
        assert_eq!(config.log_format, LogFormat::Pretty);
        assert_eq!(config.nats.mode, NatsMode::JetStream);
        assert_eq!(config.concurrency, 64);
    }

    #[test]
    fn production_needs_an_explicit_store_and_logs_json() {
        let error = error_with(|s| s.environment = "production".into());
        assert_eq!(error.variable, "NOTIF_STORE");
        assert!(
            error.to_string().contains("example: NOTIF_STORE=dynamodb"),
            "{error}"
        );
        let mut settings = raw();
        settings.environment = "production".into();
        settings.notif_store = Some("dynamodb".into());
        let config = Config::from_raw(&settings).unwrap();
        assert_eq!(config.log_format, LogFormat::Json);
    }

    #[test]
    fn bad_values_name_the_variable_and_a_good_value() {
        type Change = fn(&mut RawSettings);
        let cases: &[(Change, &str)] = &[
            (|s| s.worker_concurrency = "0".into(), "WORKER_CONCURRENCY"),
            (|s| s.worker_concurrency = "lots".into(), "WORKER_CONCURRENCY"),
            (|s| s.nats_mode = "push".into(), "NATS_MODE"),
            (|s| s.nats_url = "nats://a:4222,".into(), "NATS_URL"),
            (|s| s.nats_stream = "a.b".into(), "NATS_STREAM"),
            (|s| s.notif_store = Some("redis".into()), "NOTIF_STORE"),
            (
                |s| {
                    s.notif_store = Some("dynamodb".into());
                    s.notif_recipients_table = "a b".into();
                },
                "NOTIF_RECIPIENTS_TABLE",
            ),
            (
                |s| {
                    s.notif_store = Some("dynamodb".into());
                    s.notif_recipients_table = s.notif_table_name.clone();
                },
                "NOTIF_RECIPIENTS_TABLE",
            ),
            (|s| s.http_addr = "8080".into(), "HTTP_ADDR"),
            (
                |s| s.notif_sqlite_wal_max = "16MiB".into(),
                "NOTIF_SQLITE_WAL_MAX",
            ),
            (|s| s.notif_sqlite_wal_max = "64MB".into(), "NOTIF_SQLITE_WAL_MAX"),
            (|s| s.log_format = Some("xml".into()), "LOG_FORMAT"),
            (|s| s.environment = "staging".into(), "ENVIRONMENT"),
            (|s| s.dlq_max_age = "forever".into(), "DLQ_MAX_AGE"),
            (|s| s.dlq_max_bytes = "lots".into(), "DLQ_MAX_BYTES"),
            (
                |s| s.nats_creds_file = Some("/does/not/exist.creds".into()),
                "NATS_CREDS_FILE",
            ),
        ];
        for (change, variable) in cases {
            let error = error_with(change);
            assert_eq!(error.variable, *variable);
            let line = error.to_string();
            assert!(
                line.starts_with(variable) && line.contains("(example: ") && !line.contains('\n'),
                "{line}"
            );
        }
    }

    #[test]
    fn nats_authentication_is_one_way_and_complete() {
        let error = error_with(|s| s.nats_user = Some("worker".into()));
        assert_eq!(error.variable, "NATS_PASSWORD");
        let error = error_with(|s| s.nats_password = Some("hunter2".into()));
        assert_eq!(error.variable, "NATS_USER");
        let error = error_with(|s| {
            s.nats_token = Some("t0ken".into());
            s.nats_user = Some("worker".into());
            s.nats_password = Some("hunter2".into());
        });
        assert!(error.problem.contains("only one way"), "{error}");
        assert!(!error.to_string().contains("hunter2") && !error.to_string().contains("t0ken"));
        let mut settings = raw();
        settings.nats_user = Some("worker".into());
        settings.nats_password = Some("hunter2".into());
        let config = Config::from_raw(&settings).unwrap();
        assert!(
            !format!("{config:?}").contains("hunter2"),
            "secrets are redacted in Debug"
        );
        let error = error_with(|s| s.nats_tls_cert_file = Some("/etc/hostname".into()));
        assert_eq!(error.variable, "NATS_TLS_KEY_FILE");
    }

    #[test]
    fn the_wal_bound_takes_units() {
        for (given, bytes) in [("64MiB", 64u64 << 20), ("1GiB", 1 << 30), ("33554432", 32 << 20)] {
            let mut settings = raw();
            settings.notif_sqlite_wal_max = given.into();
            match Config::from_raw(&settings).unwrap().store {
                StoreSettings::Sqlite { wal_max, .. } => assert_eq!(wal_max, bytes, "{given}"),
                StoreSettings::DynamoDb(_) => unreachable!(),
            }
        }
    }

    #[test]
    fn http_can_be_turned_off() {
        let mut settings = raw();
        settings.http_addr = "off".into();
        assert_eq!(Config::from_raw(&settings).unwrap().http_addr, None);
    }
}
