//! The directory commands as `vane` runs them: what each prints and its
//! exit code. `test`: 0 passed, 1 a test failed or a version does not
//! compile, 2 malformed (or its settings or JUnit file unusable). `diff`: 0
//! nothing to do, 2 changes, 1 an error. `apply`: 0 applied (or waiting for
//! approval), 1 a config not applied, 2 malformed. `export`: 0 every config
//! written, 1 one was not, or the server could not be read.

use std::path::Path;
use std::process::ExitCode;

use super::apply::{Outcome, apply as apply_plan, remotes_of};
use super::client::Me;
use super::client::{Client, ClientError};
use super::plan::{ConfigPlan, Step, plan, prune};
use super::{DeclaredConfig, export as exporter, junit, load, offline};
use crate::settings::Settings;

/// Where the server is and who is asking.
pub struct Target {
    /// `http://host:port`.
    pub server: String,
    /// A bearer token (`VANE_TOKEN`).
    pub token: Option<String>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn read(who: &str, dir: &Path) -> Result<Vec<DeclaredConfig>, ExitCode> {
    load::read(dir).map_err(|malformed| {
        eprint!("{malformed}");
        eprintln!("vane {who}: {} is malformed; nothing was done", dir.display());
        ExitCode::from(2)
    })
}

/// `vane test DIR`: every version compiled and its tests run offline.
pub fn test(dir: &Path, junit_file: Option<&Path>, settings: Option<&Path>) -> ExitCode {
    let started = std::time::Instant::now();
    let configs = match read("test", dir) {
        Ok(configs) => configs,
        Err(code) => return code,
    };
    let sandbox = match settings.map(|path| Settings::load(path, true)) {
        None => Default::default(),
        Some(Ok(settings)) => settings.sandbox,
        Some(Err(e)) => {
            eprintln!("vane test: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match runtime().block_on(offline::run(&configs, &sandbox)) {
        Ok(report) => offline::Report {
            elapsed: started.elapsed(),
            ..report
        },
        Err(e) => {
            eprintln!("vane test: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.render());
    if let Some(path) = junit_file {
        let written = junit::render(&report).and_then(|xml| std::fs::write(path, xml).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("vane test: writing {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    match report.passed() {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}

/// Every config's plan, in the directory's order, then pruned ones.
async fn plans(
    client: &Client,
    me: &Me,
    configs: &[DeclaredConfig],
    pruning: bool,
) -> Result<Vec<ConfigPlan>, ClientError> {
    let mut plans = Vec::with_capacity(configs.len());
    for (declared, remote) in configs.iter().zip(remotes_of(client, &me.who, configs).await) {
        plans.push(plan(declared, &remote?));
    }
    if pruning {
        for config in client.configs().await? {
            if configs.iter().all(|c| c.id != config.id) {
                let open = client.open_changes(&config.id).await?;
                plans.push(prune(&config, &me.who, &open));
            }
        }
    }
    Ok(plans)
}

fn client_of(who: &str, target: &Target) -> Result<Client, ExitCode> {
    Client::new(&target.server, target.token.clone()).map_err(|e| {
        eprintln!("vane {who}: {e}");
        ExitCode::FAILURE
    })
}

/// `vane diff DIR`: what `apply` would do, with source diffs.
pub fn diff(dir: &Path, target: &Target, pruning: bool) -> ExitCode {
    // A malformed directory is an error here: 2 means changes.
    let Ok(configs) = read("diff", dir) else {
        return ExitCode::FAILURE;
    };
    let client = match client_of("diff", target) {
        Ok(client) => client,
        Err(code) => return code,
    };
    let planned = runtime().block_on(async {
        let me = client.me().await?;
        plans(&client, &me, &configs, pruning).await
    });
    match planned {
        Ok(plans) => {
            for plan in &plans {
                print!("{}", plan.render(true));
            }
            let changes = plans.iter().filter(|p| !p.is_empty()).count();
            println!("{changes} of {} configs to change on {}", plans.len(), client.server());
            match changes {
                0 => ExitCode::SUCCESS,
                _ => ExitCode::from(2),
            }
        }
        Err(e) => {
            eprintln!("vane diff: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `vane apply DIR`: the server made to match the directory, config by config.
pub fn apply(dir: &Path, target: &Target, dry_run: bool, pruning: bool) -> ExitCode {
    let (configs, client) = match read("apply", dir).and_then(|c| Ok((c, client_of("apply", target)?))) {
        Ok(both) => both,
        Err(code) => return code,
    };
    if pruning && configs.is_empty() {
        eprintln!(
            "vane apply: {} holds no configs, so --prune would make every config on the server inactive; refused",
            dir.display()
        );
        return ExitCode::from(2);
    }
    runtime().block_on(async {
        let read = async {
            let me = client.me().await?;
            let planned = plans(&client, &me, &configs, pruning).await?;
            Ok::<_, ClientError>((me, planned))
        };
        let (me, planned) = match read.await {
            Ok(both) => both,
            Err(e) => {
                eprintln!("vane apply: reading {}: {e}; nothing was written", client.server());
                return ExitCode::FAILURE;
            }
        };
        if dry_run {
            for plan in &planned {
                print!("{}", plan.render(false));
            }
            println!("dry run: nothing was written");
            return ExitCode::SUCCESS;
        }
        let uploads = planned
            .iter()
            .flat_map(|p| &p.steps)
            .any(|s| matches!(s, Step::Upload { .. }));
        let compiler = match uploads {
            true => match offline::Pool::start(&Default::default()).await {
                Ok(pool) => Some(pool),
                Err(e) => {
                    eprintln!("vane apply: {e}; nothing was written");
                    return ExitCode::FAILURE;
                }
            },
            false => None,
        };
        let (mut failed, mut applied, mut waiting) = (0, 0, 0);
        for plan in &planned {
            let declared = configs.iter().find(|c| c.id == plan.id);
            let pool = compiler.as_ref().map(offline::Pool::handle);
            match apply_plan(&client, &me, pool, declared, plan).await {
                Outcome::Unchanged => println!("= {}: unchanged", plan.id),
                Outcome::Applied { done, held } => {
                    applied += usize::from(!done.is_empty());
                    waiting += usize::from(!held.is_empty());
                    if !done.is_empty() {
                        println!("+ {}: applied: {}", plan.id, done.join("; "));
                    }
                    for (what, change) in held {
                        println!("? {}: {what} waits for approval (change request {change})", plan.id);
                    }
                }
                Outcome::Failed { done, why } => {
                    failed += 1;
                    println!("! {}: NOT applied: {why}", plan.id);
                    if !done.is_empty() {
                        println!("  done before the failure: {}", done.join("; "));
                    }
                }
            }
        }
        if let Some(pool) = compiler {
            pool.stop();
        }
        let unchanged = planned.iter().filter(|p| p.is_empty() && p.waiting.is_empty()).count();
        println!(
            "{applied} applied, {waiting} waiting for approval, {failed} not applied, {unchanged} unchanged, on {}",
            client.server()
        );
        match failed {
            0 => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        }
    })
}

/// `vane export DIR`: the server's configs written as a directory.
pub fn export(dir: &Path, target: &Target) -> ExitCode {
    let client = match client_of("export", target) {
        Ok(client) => client,
        Err(code) => return code,
    };
    let written = runtime().block_on(async {
        client.me().await?;
        exporter::export(&client, dir).await
    });
    match written {
        Ok(written) => {
            let mut failed = 0;
            for (id, outcome) in written {
                match outcome {
                    Ok(what) => println!("{id}: {what}"),
                    Err(why) => {
                        failed += 1;
                        println!("! {id}: not written: {why}");
                    }
                }
            }
            match failed {
                0 => ExitCode::SUCCESS,
                _ => ExitCode::FAILURE,
            }
        }
        Err(e) => {
            eprintln!("vane export: {e}");
            ExitCode::FAILURE
        }
    }
}
