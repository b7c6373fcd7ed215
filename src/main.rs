//! The `vane` command: `serve` runs the service, `worker` is the sandbox
//! process each Evaluator starts (not for people to run).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use vane::settings::Settings;

#[derive(Parser)]
#[command(version, about = "Vane: dynamic client configuration")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve {
        /// Settings file; without it `config.toml` is used when present.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run one sandbox worker on stdin/stdout (started by `serve`).
    #[command(hide = true)]
    Worker {
        #[arg(long, default_value_t = 256)]
        code_cache_entries: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Worker { code_cache_entries } => match vane::engine::worker::serve(code_cache_entries) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vane worker: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve { config } => {
            let required = config.is_some();
            let path = config.unwrap_or_else(|| PathBuf::from("config.toml"));
            let settings = match Settings::load(&path, required) {
                Ok(settings) => settings,
                Err(e) => {
                    eprintln!("vane: {e}");
                    return ExitCode::from(2);
                }
            };
            init_tracing(&settings);
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            match runtime.block_on(serve(settings)) {
                Ok(code) => code,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("vane: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind(settings.server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding server.listen {}: {e}", settings.server.listen))?;
    let mut app = vane::app::start(settings, listener).await?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, shutting down"),
        _ = terminate.recv() => tracing::info!("terminated, shutting down"),
        _ = app.supervisor_stopped() => {
            tracing::error!("actor tree stopped, exiting");
            return Ok(ExitCode::FAILURE);
        }
    }
    app.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

fn init_tracing(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log.level).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if settings.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
