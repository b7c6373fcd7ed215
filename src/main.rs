//! The `vane` command: `serve` runs the service, `watch` the agent, `import`
//! brings the Go service's tables over, and `worker` is the sandbox process
//! each Evaluator starts (not for people to run).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vane::reload::LogLevelError;
use vane::settings::Settings;

/// glibc's malloc took a fifth of the server's CPU under load (allocations
/// freed on another thread than made them); mimalloc keeps per-thread heaps.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Keep files rendered from configs in step with Vane.
    Watch {
        /// The agent's resources (see the README).
        #[arg(long, default_value = "watch.toml")]
        config: PathBuf,
        /// Render every resource once and exit (non-zero if any failed).
        #[arg(long)]
        once: bool,
        /// Render every resource to standard output and exit, writing,
        /// checking, reloading and reporting nothing.
        #[arg(long, conflicts_with = "once")]
        dry_run: bool,
    },
    /// Bring a running Go service's configs, versions, test cases and
    /// reports into Vane's store, keeping their secrets and code ids.
    /// Running it again changes nothing that is already in place.
    Import {
        /// The Go service's database: `mysql://user:password@host:3306/db`.
        #[arg(long)]
        from: String,
        /// Settings file naming Vane's store (`store.url`); without it
        /// `config.toml` is used when present.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Read both sides and say what would be written, writing nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run every test of a directory of configs offline, with the server's
    /// engines and sandbox. Exit 0 all passed, 1 a test failed, 2 the
    /// directory is malformed.
    Test {
        /// The directory: a folder per config (see the README, "Configs as code").
        dir: PathBuf,
        /// Also write the results as JUnit XML here.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// A server settings file whose `[sandbox]` limits to run under.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Show what `apply` would change on the server. Exit 0 nothing to do,
    /// 2 changes, 1 an error.
    Diff {
        /// The directory.
        dir: PathBuf,
        #[command(flatten)]
        target: Target,
        /// Also show configs the directory lacks being made inactive.
        #[arg(long)]
        prune: bool,
    },
    /// Make the server match the directory, config by config, through its
    /// test gate and approvals. Exit 0 applied, 1 a config not applied, 2
    /// the directory is malformed.
    Apply {
        /// The directory.
        dir: PathBuf,
        #[command(flatten)]
        target: Target,
        /// Say what would be done, writing nothing.
        #[arg(long)]
        dry_run: bool,
        /// Make configs the directory lacks inactive (never deleted).
        #[arg(long)]
        prune: bool,
    },
    /// Write the server's configs (released and gray versions, their tests)
    /// as a directory.
    Export {
        /// The directory to write into.
        dir: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Run one sandbox worker on stdin/stdout (started by `serve`).
    #[command(hide = true)]
    Worker {
        #[arg(long, default_value_t = 256)]
        code_cache_entries: usize,
        /// The user to drop to (given by a server that runs as root).
        #[arg(long)]
        uid: Option<u32>,
        /// The group to drop to.
        #[arg(long)]
        gid: Option<u32>,
    },
}

/// The server the directory commands talk to; the token is read from
/// `VANE_TOKEN` only, so it never shows in a process list.
#[derive(clap::Args)]
struct Target {
    /// The server's address.
    #[arg(long, env = "VANE_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
}

impl Target {
    fn resolve(self) -> vane::declared::commands::Target {
        vane::declared::commands::Target {
            server: self.server,
            token: std::env::var("VANE_TOKEN").ok(),
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // `vane diff` exits 2 for "changes to make", so its usage errors
        // exit 1 like its other errors; clap's 2 elsewhere.
        Err(e) if e.use_stderr() && std::env::args().nth(1).as_deref() == Some("diff") => {
            let _ = e.print();
            return ExitCode::FAILURE;
        }
        Err(e) => e.exit(),
    };
    if !matches!(cli.command, Command::Worker { .. }) {
        vane::tls::install();
    }
    match cli.command {
        Command::Worker {
            code_cache_entries,
            uid,
            gid,
        } => {
            transparent_huge_pages(true);
            let identity = uid.zip(gid).map(|(uid, gid)| vane::confine::Identity { uid, gid });
            let confine = || vane::confine::enter(identity).map_err(std::io::Error::other);
            match vane::engine::worker::serve(code_cache_entries, confine) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("vane worker: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Watch { config, once, dry_run } => {
            let agent = match vane::agent::AgentConfig::load(&config) {
                Ok(agent) => agent,
                Err(e) => {
                    eprintln!("vane watch: {e:#}");
                    return ExitCode::from(2);
                }
            };
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
                )
                .init();
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            runtime.block_on(async move {
                if once || dry_run {
                    let ok = if once {
                        vane::agent::once(agent).await
                    } else {
                        vane::agent::dry_run(agent).await
                    };
                    return if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE };
                }
                match vane::agent::run(config, agent, Default::default()).await {
                    Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                    Err(e) => {
                        eprintln!("vane watch: {e:#}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
        Command::Import { from, config, dry_run } => import(&from, config, dry_run),
        Command::Test { dir, junit, config } => {
            vane::declared::commands::test(&dir, junit.as_deref(), config.as_deref())
        }
        Command::Diff { dir, target, prune } => vane::declared::commands::diff(&dir, &target.resolve(), prune),
        Command::Apply {
            dir,
            target,
            dry_run,
            prune,
        } => vane::declared::commands::apply(&dir, &target.resolve(), dry_run, prune),
        Command::Export { dir, target } => vane::declared::commands::export(&dir, &target.resolve()),
        Command::Serve { config } => {
            let required = config.is_some();
            let path = config.unwrap_or_else(|| PathBuf::from("config.toml"));
            let Some(settings) = settings("vane", &path, required) else {
                return ExitCode::from(2);
            };
            let set_log_level = init_tracing(&settings);
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            match runtime.block_on(serve(settings, path, required, set_log_level)) {
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

/// The settings at `path` (which must exist when `required`), or `None`
/// once the reason is printed under `who`.
fn settings(who: &str, path: &std::path::Path, required: bool) -> Option<Settings> {
    Settings::load(path, required).map_err(|e| eprintln!("{who}: {e}")).ok()
}

/// Exit codes: 0 every row imported, 3 some rows left out (listed), 1 the
/// import stopped, 2 bad settings.
fn import(from: &str, config: Option<PathBuf>, dry_run: bool) -> ExitCode {
    let path = config.clone().unwrap_or_else(|| PathBuf::from("config.toml"));
    let Some(settings) = settings("vane import", &path, config.is_some()) else {
        return ExitCode::from(2);
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let started = std::time::Instant::now();
    let result = runtime.block_on(async {
        let store = vane::store::connect(&settings.store.url, settings.store.max_connections).await?;
        vane::import::run(from, store.as_ref(), dry_run)
            .await
            .map_err(anyhow::Error::from)
    });
    match result {
        Ok(summary) => {
            print!("{}", summary.render());
            println!("took {:.1} s", started.elapsed().as_secs_f64());
            match summary.outcome.refused.is_empty() {
                true => ExitCode::SUCCESS,
                false => ExitCode::from(3),
            }
        }
        Err(e) => {
            eprintln!("vane import: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    settings: Settings,
    path: PathBuf,
    required: bool,
    set_log_level: vane::reload::SetLogLevel,
) -> anyhow::Result<ExitCode> {
    transparent_huge_pages(false);
    open_file_room(settings.server.max_connections);
    use tokio::signal::unix::{SignalKind, signal};
    let listener = vane::app::listen(settings.server.listen)
        .map_err(|e| anyhow::anyhow!("binding server.listen {}: {e}", settings.server.listen))?;
    let mut app = vane::app::start(settings, listener).await?;
    app.set_settings_source(path, required);
    app.state.reloader.set_log_level_setter(set_log_level);
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = interrupt.recv() => { tracing::info!("interrupted, shutting down"); break; }
            _ = terminate.recv() => { tracing::info!("terminated, shutting down"); break; }
            _ = hangup.recv() => match app.reload() {
                Ok(plan) => tracing::info!(
                    applied = plan.applied.len(),
                    restart_required = plan.restart_required.len(),
                    "settings reloaded"
                ),
                Err(e) => tracing::warn!(error = %e, "settings reload refused; nothing changed"),
            },
            _ = app.supervisor_stopped() => {
                tracing::error!("actor tree stopped, exiting");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    // A second signal means now.
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("vane: second signal, exiting at once");
        std::process::exit(130);
    });
    app.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Installs the subscriber; returns how a reload changes its level.
fn init_tracing(settings: &Settings) -> vane::reload::SetLogLevel {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{EnvFilter, reload};
    let filter = EnvFilter::try_new(&settings.log.level).unwrap_or_else(|_| "info".into());
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    if settings.log.format == "json" {
        registry.with(tracing_subscriber::fmt::layer().json()).init();
    } else {
        registry.with(tracing_subscriber::fmt::layer()).init();
    }
    Box::new(move |level| {
        let filter = EnvFilter::try_new(level).map_err(|e| LogLevelError(e.into()))?;
        handle.reload(filter).map_err(|e| LogLevelError(e.into()))
    })
}

/// Raises the open-file limit to its hard maximum (the soft default, often
/// 1024, runs out long before `server.max_connections`), and warns when even
/// that leaves too little room: past it, accepts fail instead of being
/// refused with a 503.
fn open_file_room(max_connections: usize) {
    // Workers' pipes, the store's pool, Redis, logs.
    const RESERVE: u64 = 256;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    let wanted = max_connections as u64 + RESERVE;
    if limit.rlim_cur < wanted {
        tracing::warn!(
            open_files = limit.rlim_cur,
            max_connections,
            "the open-file limit is below server.max_connections plus {RESERVE}; lower one or raise the other"
        );
    }
}

/// Whether this process's memory may come in transparent huge pages. The
/// server's may not: in a change wave every connection's buffers touch new
/// memory, and zeroing 2 MiB pages for them took 60% of its CPU
/// (`examples/herd.rs`). Its worker processes inherit the setting, and turn
/// it back on: scripts that build large values run faster with huge pages.
fn transparent_huge_pages(allowed: bool) {
    // SAFETY: prctl with integer arguments only sets a flag of this process.
    let done = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, libc::c_ulong::from(!allowed), 0, 0, 0) };
    if done != 0 {
        tracing::debug!(allowed, "could not set transparent huge pages");
    }
}
