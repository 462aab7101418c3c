//! `convene`: the command line. Parses arguments, sets up logging and calls into `convene-server`.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use convene_server::config::LogFormat;
use convene_server::{AppState, Config};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

mod instance;
mod key;
mod serve_lock;

#[derive(Parser)]
#[command(name = "convene", version, about = "Self-hosted WhatsApp group gateway")]
struct Cli {
    /// Config file (TOML) layered over the defaults; `CONVENE_*` environment variables override both.
    #[arg(long, global = true, env = "CONVENE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API. On the first start: creates the database, an admin API key and a sandbox instance.
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Print the OpenAPI document, or write it to a file.
    Openapi {
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Account API keys: create (optionally scoped to instances, or read-only), list, revoke. Works on the
    /// database directly.
    Key {
        #[command(subcommand)]
        command: key::KeyCommand,
    },
    /// Instances on a running Convene, over its HTTP API.
    Instance {
        #[command(subcommand)]
        command: instance::InstanceCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the default configuration, every key commented.
    Default,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // What this process creates — the data directory, the database and its `-wal`/`-shm`, the sandbox world, device
    // keys, the secrets key — is for its owner only (0700 directories, 0600 files). One mask covers the files that
    // libraries create too (SQLite's WAL files, whatsapp-rust's device store), which no per-file mode here could.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    match cli.command {
        Command::Serve => serve(&configured(cli.config.as_deref())?).await,
        Command::Migrate => {
            let config = configured(cli.config.as_deref())?;
            serve_lock::hold_until_exit(&config)?;
            AppState::open_with_system_clock(&config).await?;
            println!("database {} is up to date", config.database_url);
            Ok(())
        }
        Command::Openapi { out } => {
            let json = convene_server::openapi_json();
            match out {
                Some(path) => std::fs::write(&path, json).with_context(|| format!("writing {}", path.display())),
                None => print_quietly(&json),
            }
        }
        Command::Key { command } => key::run(command, &configured(cli.config.as_deref())?).await,
        Command::Instance { command } => {
            start_logging(LogFormat::Text);
            instance::run(command, cli.config.as_deref()).await
        }
        Command::Config { command: ConfigCommand::Default } => print_quietly(convene_server::config::default_config()),
    }
}

/// The configuration, with logging set up as it says.
fn configured(file: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let config = Config::load(file)?;
    start_logging(config.logging.format);
    Ok(config)
}

/// Logs to standard error in `format`, filtered by `CONVENE_LOG` (default `info`). Colours only on a terminal: a log
/// file or a collector gets no escape codes.
fn start_logging(format: LogFormat) {
    use std::io::IsTerminal as _;
    let logger = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("CONVENE_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => logger.init(),
        LogFormat::Json => logger.json().flatten_event(true).with_current_span(true).with_span_list(false).init(),
    }
}

/// Writes `text` to standard output. A reader that stops early (`convene openapi | head`) ends the output quietly,
/// as Unix tools do, rather than with a broken-pipe panic.
fn print_quietly(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to standard output"),
        _ => Ok(()),
    }
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    serve_lock::hold_until_exit(config)?;
    let state = AppState::open_with_system_clock(config).await?;
    if let Some(first) =
        state.service.bootstrap(config.bootstrap_sandbox_instance).await.map_err(|e| anyhow::anyhow!("{e}"))?
    {
        println!("Convene is set up. This admin API key is shown only once; keep it:");
        println!("  API key:   {}", first.api_key);
        if let Some((instance, token)) = &first.instance {
            println!("A sandbox instance is ready:");
            println!("  id:        {}", instance.id);
            println!("  token:     {token}");
            if let Some(phone) = &instance.phone {
                println!("  number:    {}", phone.e164());
            }
        }
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    // Ctrl-C (SIGINT) and SIGTERM stop the server cleanly. The handlers are in place before anyone is told where
    // we listen, so a signal sent right after that is never the default "die at once".
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    println!("Listening on http://{addr} (API docs: http://{addr}/docs)");
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down");
        on_signal.cancel();
    });
    convene_server::serve(listener, state, config, shutdown).await?;
    Ok(())
}
