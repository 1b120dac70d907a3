//! The `intake` command line: `serve` (the default), `migrate`, `tokens create|list|revoke`.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
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
    /// Print the OpenAPI 3.1 document (needs no configuration or database).
    Openapi,
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
    if matches!(cli.command, Some(Command::Openapi)) {
        println!("{}", crate::openapi::document_json());
        return Ok(());
    }
    let settings = Settings::load(&Settings::default_dir())?;
    telemetry::init(&settings.log);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&settings).await,
        Command::Migrate => migrate(&settings).await,
        Command::Tokens(command) => tokens(&settings, command).await,
        Command::Relay => crate::relay::run(&settings).await,
        Command::Openapi => Ok(()),
    }
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
