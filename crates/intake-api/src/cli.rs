//! The `intake` command line: `serve` (the default), `migrate`, `tokens create|list|revoke`,
//! `relay`, `openapi`, and `send` (one event to a server, through `intake-client`).

use std::fmt;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand};
use intake_domain::{RateLimit, Scope, TenantId, TokenId, TokenRecord};
use serde::Serialize;

use crate::auth::issue_token;
use crate::settings::Settings;
use crate::startup::{Application, Backend};
use crate::telemetry;
use crate::wire::format_timestamp;

/// The Event Intake API.
#[derive(Debug, Parser)]
#[command(name = "intake", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Create the database if needed and apply every pending migration; safe to run twice.
    Migrate,
    /// Manage API tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Publishes every stored event to NATS JetStream (see `[relay]` in config/base.toml).
    Relay,
    /// One maintenance run (retention, the keys window) and every pending erasure, then exit;
    /// for cron (`intake serve` maintains by itself too; see `[retention]`).
    Maintain,
    /// Print the OpenAPI 3.1 document (needs no configuration or database).
    Openapi,
    /// Send one event to a server now and print its answer (needs no configuration).
    Send(SendArgs),
}

/// `intake send --url URL --token TOKEN [--key K] [--occurred-at T] EVENT_TYPE JSON_DATA`.
#[derive(Args)]
struct SendArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A token with the scope events:write.
    #[arg(long, env = "INTAKE_TOKEN", hide_env_values = true)]
    token: String,
    /// The idempotency key (default: a new UUID, printed, so that the event can be sent again).
    #[arg(long)]
    key: Option<String>,
    /// When the event happened: RFC 3339 with an offset (default: now).
    #[arg(long = "occurred-at", value_name = "T")]
    occurred_at: Option<String>,
    /// The event type, e.g. user.created.
    event_type: String,
    /// The event's data, a JSON object, e.g. '{"user_id":"u_1"}'.
    #[arg(value_name = "JSON_DATA")]
    data: String,
}

/// The token never shows.
impl fmt::Debug for SendArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendArgs")
            .field("url", &self.url)
            .field("key", &self.key)
            .field("occurred_at", &self.occurred_at)
            .field("event_type", &self.event_type)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Create a token and print its secret (shown only this once).
    Create {
        /// The tenant the token acts for.
        #[arg(long)]
        tenant: String,
        /// A label for people.
        #[arg(long)]
        name: String,
        /// A scope (events:write, events:read); repeat for several. Default: every scope.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Its own rate limit in events per second (with --burst); else the configured default.
        #[arg(long, requires = "burst")]
        rate: Option<u32>,
        /// The most events at once (with --rate).
        #[arg(long, requires = "rate")]
        burst: Option<u32>,
    },
    /// Changes a token's rate limit; takes effect within a few seconds.
    Update {
        /// The token's id (tok_…).
        id: String,
        /// Events per second (with --burst).
        #[arg(long, requires = "burst", conflicts_with = "default_limit")]
        rate: Option<u32>,
        /// The most events at once (with --rate).
        #[arg(long, requires = "rate", conflicts_with = "default_limit")]
        burst: Option<u32>,
        /// Back to the configured default.
        #[arg(long = "default-limit")]
        default_limit: bool,
    },
    /// List every token (never their secrets), newest first.
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id (tok_…).
    Revoke {
        /// The token's id, as `tokens list` shows it.
        id: String,
    },
}

/// Runs the command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // The commands that need no configuration, database or log.
    let command = match cli.command.unwrap_or(Command::Serve) {
        Command::Openapi => {
            println!("{}", crate::openapi::document_json());
            return Ok(());
        }
        Command::Send(args) => return send(args).await,
        command => command,
    };
    let settings = Settings::load(&Settings::default_dir())?;
    telemetry::init(&settings.log);
    match command {
        Command::Serve => serve(&settings).await,
        Command::Migrate => migrate(&settings).await,
        Command::Tokens(command) => tokens(&settings, command).await,
        Command::Relay => crate::relay::run(&settings).await,
        Command::Maintain => maintain(&settings).await,
        Command::Openapi | Command::Send(_) => Ok(()),
    }
}

/// Posts one event with `send_now` and prints the answer; a refusal is an error naming the
/// problem's detail and each of its errors.
async fn send(args: SendArgs) -> anyhow::Result<()> {
    let data: serde_json::Value =
        serde_json::from_str(&args.data).context("JSON_DATA is not valid JSON")?;
    let mut event = intake_client::Event::new(args.event_type, data);
    if let Some(at) = &args.occurred_at {
        let at = chrono::DateTime::parse_from_rfc3339(at).map_err(|_| {
            anyhow!("--occurred-at {at:?} is not an RFC 3339 date-time with an offset")
        })?;
        event = event.occurred_at(at);
    }
    if let Some(key) = args.key {
        event = event.idempotency_key(key);
    }
    let client = intake_client::Client::new(&args.url, args.token)?;
    let answer = client.send_now(event).await;
    client.close(Duration::ZERO).await;
    match answer {
        Ok(accepted) => {
            print!("{}", answer_lines(&accepted));
            Ok(())
        }
        Err(intake_client::SendNowError::Refused(problem)) => Err(anyhow!(refusal(&problem))),
        Err(error) => Err(anyhow::Error::new(error).context(format!("sending to {}", args.url))),
    }
}

/// `name: value` lines: the event id, whether it was a replay, when it was received, its key
/// and `occurred_at` (with both, `--key` and `--occurred-at` send it again as a replay), and
/// the clock skew when the server reports one.
fn answer_lines(accepted: &intake_client::Accepted) -> String {
    let mut lines = format!(
        "event_id: {}\ndeduplicated: {}\nreceived_at: {}\nidempotency_key: {}\noccurred_at: {}\n",
        accepted.event_id,
        accepted.deduplicated,
        format_timestamp(accepted.received_at),
        accepted.idempotency_key,
        accepted.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    );
    if let Some(skew) = accepted.clock_skew_ms {
        lines.push_str(&format!("clock_skew_ms: {skew}\n"));
    }
    lines
}

/// `the server refused the event: <status> <type>: <detail>`, then one line per error and the
/// request id.
fn refusal(problem: &intake_client::Problem) -> String {
    let mut text = format!(
        "the server refused the event: {} {}: {}",
        problem.status,
        problem.slug(),
        problem.detail.as_deref().unwrap_or(&problem.title)
    );
    for error in &problem.errors {
        text.push_str(&format!("\n  {error}"));
    }
    if let Some(request_id) = &problem.request_id {
        text.push_str(&format!("\n  request_id: {request_id}"));
    }
    text
}

async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let app = Application::build(settings)?;
    tracing::info!(
        environment = %settings.environment,
        address = %format!("{}:{}", settings.server.host, app.port()),
        "serving"
    );
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let url = &settings.database.url;
    intake_storage::ensure_database(url).await.context("cannot reach or create the database")?;
    let store = crate::backend::store(settings)?;
    intake_storage::migrate(store.pool()).await.context("migrations failed")?;
    store.pool().close().await;
    eprintln!("migrations applied");
    Ok(())
}

async fn maintain(settings: &Settings) -> anyhow::Result<()> {
    let backend = Backend::connect(settings, None)?;
    let lifetime = intake_service::Lifetime::new(
        backend.lifetime.clone(),
        settings.retention.retention()?,
        settings.retention.maintenance_interval,
    );
    let done = async {
        match lifetime.maintain_once().await.context("maintenance failed")? {
            Some(report) => println!(
                "partitions_created: {}\npartitions_dropped: {}\nevents_dropped: {}\n\
                 key_generations_started: {}\nkey_generations_dropped: {}\nkeys_dropped: {}",
                report.partitions_created,
                report.partitions_dropped,
                report.events_dropped,
                report.key_generations_started,
                report.key_generations_dropped,
                report.keys_dropped,
            ),
            None => println!("skipped: another server is maintaining now"),
        }
        let steps = lifetime.erase_all().await.context("erasing failed")?;
        println!("erasure_steps: {steps}");
        anyhow::Ok(())
    }
    .await;
    (backend.close)().await;
    done
}

async fn tokens(settings: &Settings, command: TokensCommand) -> anyhow::Result<()> {
    let backend = Backend::connect(settings, None)?;
    let store = backend.tokens.clone();
    let done = tokens_on(store.as_ref(), command).await;
    (backend.close)().await;
    done
}

async fn tokens_on(
    store: &dyn intake_domain::TokenStore,
    command: TokensCommand,
) -> anyhow::Result<()> {
    match command {
        TokensCommand::Create { tenant, name, scopes, rate, burst } => {
            let limit = limit_of(rate, burst)?;
            let tenant = TenantId::parse(&tenant)?;
            let scopes = if scopes.is_empty() {
                Scope::ALL.to_vec()
            } else {
                let mut parsed =
                    scopes.iter().map(|s| s.parse::<Scope>()).collect::<Result<Vec<_>, _>>()?;
                parsed.sort();
                parsed.dedup();
                parsed
            };
            if name.trim().is_empty() {
                bail!("--name must not be empty");
            }
            let mut issued = issue_token(tenant, name, scopes)?;
            issued.token.limit = limit;
            let record = store.create(&issued.token).await.context("storing the token")?;
            println!("{}", issued.secret);
            eprintln!(
                "created {} for tenant {}; the token above is shown only once",
                record.id, record.tenant
            );
        }
        TokensCommand::List { json } => {
            let listed: Vec<ListedToken> =
                store.list().await.context("listing tokens")?.iter().map(ListedToken::of).collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&listed)?);
            } else {
                print!("{}", token_table(&listed));
            }
        }
        TokensCommand::Update { id, rate, burst, default_limit } => {
            let id: TokenId = id.parse()?;
            if !default_limit && rate.is_none() {
                bail!("give --rate N --burst M, or --default-limit");
            }
            let limit = limit_of(rate, burst)?;
            if !store.set_limit(id, limit).await.context("updating the token")? {
                bail!("no active token {id}");
            }
            match limit {
                Some(l) => {
                    eprintln!("{id} now allows {} events/s, bursts of {}", l.per_second, l.burst)
                }
                None => eprintln!("{id} now follows the configured default limit"),
            }
        }
        TokensCommand::Revoke { id } => {
            let id: TokenId = id.parse()?;
            if !store.revoke(id).await.context("revoking the token")? {
                bail!("no active token {id}");
            }
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}

/// The limit `--rate` and `--burst` give, if any.
fn limit_of(rate: Option<u32>, burst: Option<u32>) -> anyhow::Result<Option<RateLimit>> {
    match (rate, burst) {
        (Some(rate), Some(burst)) => {
            RateLimit::new(rate, burst).map(Some).context("--rate and --burst must be at least 1")
        }
        (None, None) => Ok(None),
        _ => bail!("give --rate and --burst together"),
    }
}

/// A token as `tokens list` shows it.
#[derive(Debug, Serialize)]
struct ListedToken {
    id: String,
    tenant: String,
    name: String,
    scopes: Vec<&'static str>,
    created_at: String,
    revoked_at: Option<String>,
    /// Events per second, `null` for the configured default.
    rate: Option<u32>,
    /// Burst, `null` for the configured default.
    burst: Option<u32>,
}

impl ListedToken {
    fn of(record: &TokenRecord) -> Self {
        Self {
            id: record.id.to_string(),
            tenant: record.tenant.to_string(),
            name: record.name.clone(),
            scopes: record.scopes.iter().map(|s| s.as_str()).collect(),
            created_at: format_timestamp(record.created_at),
            revoked_at: record.revoked_at.map(format_timestamp),
            rate: record.limit.map(|l| l.per_second),
            burst: record.limit.map(|l| l.burst),
        }
    }
}

/// Tab-separated lines under a header row: ID, TENANT, NAME, SCOPES, RATE, CREATED, STATE.
/// RATE is `<events per second>/<burst>`, or `default`.
fn token_table(tokens: &[ListedToken]) -> String {
    let mut out = String::from("ID\tTENANT\tNAME\tSCOPES\tRATE\tCREATED\tSTATE\n");
    for t in tokens {
        let state = match &t.revoked_at {
            Some(at) => format!("revoked {at}"),
            None => "active".to_owned(),
        };
        let rate = match (t.rate, t.burst) {
            (Some(rate), Some(burst)) => format!("{rate}/{burst}"),
            _ => "default".to_owned(),
        };
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            t.id,
            t.tenant,
            t.name,
            t.scopes.join(","),
            rate,
            t.created_at,
            state
        ));
    }
    out
}
