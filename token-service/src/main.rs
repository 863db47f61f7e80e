//! token-service: the token store the GetOAuthV2Info/SetOAuthV2Info filter
//! talks to (RFC 7662 introspection, attribute merge, OAuth 2.0 token and
//! revocation endpoints, admin import). See docs/token-service.md.

use token_service::{http, store};

use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};
use tracing_subscriber::filter::LevelFilter;

const SERVICE_KEY_ENV: &str = "TOKEN_SERVICE_KEY";
const ADMIN_KEY_ENV: &str = "TOKEN_SERVICE_ADMIN_KEY";
const DEV_SERVICE_KEY: &str = "dev-service-key";
const DEV_ADMIN_KEY: &str = "dev-admin-key";

const ENV_HELP: &str = "\
Environment:
  TOKEN_SERVICE_KEY        service key: callers of /oauth2/introspect,
                           /v1/accesstokens/attributes and /v1/changes send
                           `Authorization: Bearer <service key>`
  TOKEN_SERVICE_ADMIN_KEY  admin key: callers of /v1/apps and /v1/tokens (and
                           /oauth2/revoke for any token) send
                           `Authorization: Bearer <admin key>`
  TOKEN_SERVICE_DB         the --db value when --db is not given (a
                           postgres:// URL with its password stays out of
                           the process listing this way)
  PGPASSWORD               the PostgreSQL password when the URL has none
  PGSSLROOTCERT            PEM file of the CA certificates that verify the
                           PostgreSQL server with sslmode=require (default:
                           the system's)
Both keys are required (and must differ) unless --dev is given. Keys are
read from the environment only, so they never show in a process listing.
Passwords are never logged: the start line shows the URL as
postgres://user:***@host:port/db.

Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM), 1 when the store or
the listener cannot be opened (or PostgreSQL did not answer within
--db-start-wait-secs), 2 for bad options or missing keys.";

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// key=value lines
    Text,
    /// one JSON object per line
    Json,
}

/// Token store and RFC 7662 introspection service for the Apigee
/// GetOAuthV2Info/SetOAuthV2Info Envoy filter.
#[derive(Debug, Parser)]
#[command(name = "token-service", version, after_help = ENV_HELP, args_override_self = true)]
struct Args {
    /// Address and port to listen on (port 0 picks a free port; the start
    /// log line tells which)
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,

    /// The store: a SQLite file path (created, with its schema, when
    /// missing), or a PostgreSQL URL
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=require] shared by
    /// every replica. Schema migrations are applied at start on both.
    #[arg(
        long,
        value_name = "PATH|URL",
        env = "TOKEN_SERVICE_DB",
        hide_env_values = true,
        default_value = "token-service.db"
    )]
    db: String,

    /// Value of `organization_name` in every token profile
    #[arg(long, value_name = "NAME", default_value = "local")]
    org_name: String,

    /// Development mode: start without keys and use `dev-service-key` and
    /// `dev-admin-key` for the missing ones (logged as a warning). Never in
    /// production.
    #[arg(long)]
    dev: bool,

    /// Lifetime in seconds of the access tokens this service issues
    /// (-1: never expire)
    #[arg(long, value_name = "SECONDS", default_value_t = 3600,
          allow_negative_numbers = true, value_parser = parse_lifetime)]
    access_token_lifetime: i64,

    /// Lifetime in seconds of the refresh tokens this service issues, and the
    /// default for imported refresh tokens (-1: never expire)
    #[arg(long, value_name = "SECONDS", default_value_t = 86400,
          allow_negative_numbers = true, value_parser = parse_lifetime)]
    refresh_token_lifetime: i64,

    /// Most custom attributes one access token (or code) may carry
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(1..))]
    max_attributes: u16,

    /// Number of SQLite read connections
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    read_connections: u16,

    /// PostgreSQL: most connections this replica opens
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    db_pool_size: u16,

    /// PostgreSQL: the most one store call may take (waiting for a
    /// connection, connecting, every statement); past it the request gets
    /// 503 store_unavailable
    #[arg(long, value_name = "MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(50..=600_000))]
    db_timeout_ms: u64,

    /// PostgreSQL: how long the start waits for the database to answer
    /// before exiting with 1
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    db_start_wait_secs: u64,

    /// How long the change feed (GET /v1/changes) keeps a change; older
    /// ones are pruned, and a cursor before them gets 410 cursor_expired
    #[arg(long, value_name = "SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=30 * 24 * 3600))]
    change_retention_secs: u64,

    /// Keep only a SHA-256 of access tokens, refresh tokens and codes (and
    /// the change feed's fingerprint): a stolen database or backup holds no
    /// usable token. A plain store is hashed in place at start; a hashed
    /// store needs this flag (it cannot be undone). See
    /// docs/token-service.md, "Tokens hashed at rest".
    #[arg(long)]
    hash_tokens: bool,

    /// Log level: error, warn, info, debug (one line per request) or trace
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: LevelFilter,

    /// Log line format
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn parse_lifetime(s: &str) -> Result<i64, String> {
    let v: i64 = s.parse().map_err(|e| format!("{e}"))?;
    if v == -1 || (1..=100 * 365 * 24 * 3600).contains(&v) {
        Ok(v)
    } else {
        Err("must be -1 (never expires) or 1..=3153600000 seconds".into())
    }
}

fn init_logging(args: &Args) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(args.log_level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn env_key(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The (service, admin) keys, or the message to exit with.
fn keys(dev: bool) -> Result<(String, String), String> {
    let service = env_key(SERVICE_KEY_ENV);
    let admin = env_key(ADMIN_KEY_ENV);
    let (service, admin) = match (service, admin, dev) {
        (Some(s), Some(a), _) => (s, a),
        (s, a, true) => {
            warn!(
                "DEVELOPMENT MODE (--dev): {} missing, using the built-in key(s) `{DEV_SERVICE_KEY}` / \
                 `{DEV_ADMIN_KEY}` that anyone can guess. NEVER RUN --dev IN PRODUCTION.",
                [(SERVICE_KEY_ENV, s.is_none()), (ADMIN_KEY_ENV, a.is_none())]
                    .iter()
                    .filter(|(_, missing)| *missing)
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(" and ")
            );
            (
                s.unwrap_or_else(|| DEV_SERVICE_KEY.to_owned()),
                a.unwrap_or_else(|| DEV_ADMIN_KEY.to_owned()),
            )
        }
        (s, a, false) => {
            let missing: Vec<&str> = [(SERVICE_KEY_ENV, s.is_none()), (ADMIN_KEY_ENV, a.is_none())]
                .iter()
                .filter(|(_, m)| *m)
                .map(|(n, _)| *n)
                .collect();
            return Err(format!(
                "token-service: refusing to start without keys: set {} (missing: {}), \
                 or pass --dev for development keys",
                format_args!("{SERVICE_KEY_ENV} (service key) and {ADMIN_KEY_ENV} (admin key)"),
                missing.join(", ")
            ));
        }
    };
    if service == admin {
        return Err(format!(
            "token-service: {SERVICE_KEY_ENV} and {ADMIN_KEY_ENV} must differ"
        ));
    }
    Ok((service, admin))
}

/// Executor threads: one per CPU.
fn executor_threads() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args);
    let (service_key, admin_key) = match keys(args.dev) {
        Ok(k) => k,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(executor_threads())
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(args, service_key, admin_key))
}

/// Opens the store `--db` names.
async fn open_store(args: &Args) -> Result<store::Store, (String, String)> {
    match store::Target::parse(&args.db) {
        store::Target::Sqlite(path) => {
            // Reads run on the executor threads: one read connection each, at least.
            let readers = usize::from(args.read_connections).max(executor_threads());
            let shown = path.display().to_string();
            let hash = args.hash_tokens;
            tokio::task::spawn_blocking(move || {
                store::sqlite::Sqlite::open_with(&path, readers, hash)
            })
            .await
            .map_err(|e| (shown.clone(), e.to_string()))?
            .map(|s| store::Store::Sqlite(Arc::new(s)))
            .map_err(|e| (shown, e))
        }
        store::Target::Postgres(url) => {
            let opts = store::postgres::Options {
                pool_size: usize::from(args.db_pool_size),
                timeout: Duration::from_millis(args.db_timeout_ms),
                start_wait: Duration::from_secs(args.db_start_wait_secs),
                hash_tokens: args.hash_tokens,
            };
            let shown = store::postgres::config(&url, opts.timeout)
                .map(|c| store::postgres::describe(&c))
                .unwrap_or_else(|_| "postgres://…".to_owned());
            store::postgres::Postgres::open(&url, &opts)
                .await
                .map(store::Store::Postgres)
                .map_err(|e| (shown, e))
        }
    }
}

/// Prunes the change feed every quarter of the retention (1 s to 1 min).
async fn prune_changes(store: Arc<store::Store>, retention: Duration) {
    let every = (retention / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.prune_changes(retention_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pruned = n, "change feed pruned"),
            // Already logged (503/500); the next tick tries again.
            Err(_) => {}
        }
    }
}

async fn run(args: Args, service_key: String, admin_key: String) -> ExitCode {
    let store = match open_store(&args).await {
        Ok(s) => Arc::new(s),
        Err((db, e)) => {
            error!(db = %db, error = %e, "cannot open the store");
            return ExitCode::from(1);
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            error!(listen = %args.listen, error = %e, "cannot listen");
            return ExitCode::from(1);
        }
    };
    let addr = listener.local_addr().unwrap_or(args.listen);
    let state = Arc::new(http::AppState {
        store: Arc::clone(&store),
        cfg: http::Config {
            org: args.org_name.clone(),
            lifetimes: store::Lifetimes {
                access: args.access_token_lifetime,
                refresh: args.refresh_token_lifetime,
            },
            max_attributes: usize::from(args.max_attributes),
            service_key,
            admin_key,
        },
    });
    let (db, mode) = store.describe();
    tokio::spawn(prune_changes(
        Arc::clone(&store),
        Duration::from_secs(args.change_retention_secs),
    ));
    info!(
        addr = %addr,
        db = %db,
        store = mode,
        schema_version = store::SCHEMA_VERSION,
        hash_tokens = store.hashing() == store::Hashing::Sha256,
        change_retention_secs = args.change_retention_secs,
        org = %args.org_name,
        access_token_lifetime = args.access_token_lifetime,
        refresh_token_lifetime = args.refresh_token_lifetime,
        max_attributes = args.max_attributes,
        "token service listening"
    );
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let served = axum::serve(listener, http::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await;
    match served {
        Ok(()) => {
            info!("token service stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(error = %e, "server failed");
            ExitCode::from(1)
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    info!("shutting down");
}
