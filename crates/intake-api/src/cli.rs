//! The `intake` command line: `serve` (the default), `migrate`, `tokens create|list|revoke`.

use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use intake_domain::{Scope, TenantId, TokenId, TokenStore};
use intake_storage::PgStore;

use crate::auth::{describe, issue_token};
use crate::settings::Settings;
use crate::startup::Application;
use crate::telemetry;

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
        /// A scope (events:write, events:read); repeat for several. Default: both.
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// List every token (never their secrets).
    List,
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
    let store = PgStore::connect_lazy(url, &settings.database.pool())?;
    intake_storage::migrate(store.pool()).await.context("migrations failed")?;
    store.pool().close().await;
    eprintln!("migrations applied");
    Ok(())
}

async fn tokens(settings: &Settings, command: TokensCommand) -> anyhow::Result<()> {
    let store: Arc<dyn TokenStore> =
        Arc::new(PgStore::connect_lazy(&settings.database.url, &settings.database.pool())?);
    match command {
        TokensCommand::Create { tenant, name, scopes } => {
            let tenant = TenantId::parse(&tenant).map_err(anyhow::Error::msg)?;
            let scopes = if scopes.is_empty() {
                Scope::ALL.to_vec()
            } else {
                let mut parsed = scopes
                    .iter()
                    .map(|s| s.parse::<Scope>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(anyhow::Error::msg)?;
                parsed.sort();
                parsed.dedup();
                parsed
            };
            if name.trim().is_empty() {
                bail!("--name must not be empty");
            }
            let issued = issue_token(tenant, name, scopes)?;
            let record = store.create(&issued.token).await.context("storing the token")?;
            println!("{}", issued.secret);
            eprintln!("created {}; the token above is shown only once", describe(&record));
        }
        TokensCommand::List => {
            for record in store.list().await.context("listing tokens")? {
                println!("{}", describe(&record));
            }
        }
        TokensCommand::Revoke { id } => {
            let id: TokenId = id.parse().map_err(anyhow::Error::msg)?;
            if !store.revoke(id).await.context("revoking the token")? {
                bail!("no active token {id}");
            }
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}
