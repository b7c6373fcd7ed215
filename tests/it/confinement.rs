//! Worker processes as a sandbox behind the interpreters: no secrets in
//! their environment, no inherited descriptors, no new privileges, a
//! seccomp filter, an unprivileged user when the server is root; opening a
//! file is refused and starting a program or a socket kills the worker,
//! while the next request is served. The server's environment must hold a
//! secret for the first check to mean anything, and setting one here would
//! race the other tests' threads: the body runs in a child process of this
//! binary, started with the secret in its environment.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use vane::actors::evaluator::EvalError;
use vane::engine::protocol::Probe;

use crate::common;
use crate::common::{Backend, TestApp, eventually};

fn proc_file(pid: u32, name: &str) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/{name}")).unwrap()).into_owned()
}

fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in\n{status}"))
        .trim()
        .to_owned()
}

/// In the server's environment, for the worker's to leave out.
const SECRET: (&str, &str) = ("VANE_AUTH__ADMIN_TOKENS", "leak=leaked-token-0123456789");
const INSIDE: &str = "confinement::workers_hold_no_secrets_or_rights_inside";

#[test]
fn workers_hold_no_secrets_or_rights_and_survive_what_they_are_refused() {
    let run = std::process::Command::new(std::env::current_exe().unwrap())
        .args([INSIDE, "--exact", "--ignored"])
        .env(SECRET.0, SECRET.1)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{out}\n{err}");
    // Neither a filter that matched nothing nor a body that skipped.
    assert!(out.contains(&format!("test {INSIDE} ... ok")), "{out}\n{err}");
    assert!(!err.contains("skipping"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "run in a process of its own by workers_hold_no_secrets_or_rights_and_survive_what_they_are_refused"]
async fn workers_hold_no_secrets_or_rights_inside() {
    if std::env::var(SECRET.0).as_deref() != Ok(SECRET.1) {
        return common::skipped(
            "confinement",
            &format!("{} is not set: run it through its parent test", SECRET.0),
        );
    }
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.sandbox.workers = 1)
        .await
        .unwrap();
    app.released("ok", "return 1", json!([])).await;
    assert_eq!(app.fetch("ok", json!({})).await.0, StatusCode::OK);
    let pool = app.state().pool.clone();
    let pid = pool.status().await.unwrap().worker_list[0]
        .pid
        .expect("a worker process");

    let environ = proc_file(pid, "environ");
    assert!(!environ.contains("VANE_"), "the worker sees {environ:?}");
    let status = proc_file(pid, "status");
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");
    assert_eq!(status_field(&status, "Seccomp"), "2");
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let uid = status_field(&status, "Uid");
        assert!(
            !uid.starts_with("0\t"),
            "a root server's worker still runs as root: {uid}"
        );
    }
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        fds.iter().all(|fd| ["0", "1", "2"].contains(&fd.as_str())),
        "open descriptors {fds:?}"
    );

    // Opening a file is refused: the script gets an error, the worker lives.
    match pool.probe(Probe::Open).await {
        Err(EvalError::Engine(e)) => assert!(e.to_string().contains("refused"), "{e}"),
        other => panic!("opening a file was not refused: {other:?}"),
    }
    assert_eq!(pool.status().await.unwrap().worker_list[0].pid, Some(pid));
    // Sockets and programs kill the worker; the caller hears it died, and
    // the next request is served by its replacement.
    for probe in [Probe::Socket, Probe::Exec] {
        match pool.probe(probe).await {
            Err(EvalError::Crashed(why)) => assert!(why.contains("signal"), "{probe:?}: {why}"),
            other => panic!("{probe:?} did not kill the worker: {other:?}"),
        }
        let (status, body) = app.fetch("ok", json!({})).await;
        assert_eq!(status, StatusCode::OK, "after {probe:?}: {body}");
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            pool.status().await.unwrap().worker_list[0]
                .pid
                .is_some_and(|p| p != pid)
        })
        .await
    );
    app.stop().await;
}
