//! `vane watch` and the registry, as an operator gets them wrong and right:
//! a wrong token or a grant that does not cover the service stops the agent
//! with the reason (as a refused subscription does) rather than retrying
//! forever; a bad `[[register]]` is refused when the file is read; and a
//! template that lists every service sees one that appears later.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::common::{BEARER, Backend, TestApp, eventually};

fn watch(dir: &std::path::Path, toml: &str, args: &[&str]) -> std::process::Child {
    let file = dir.join("watch.toml");
    std::fs::write(&file, toml).unwrap();
    Command::new(env!("CARGO_BIN_EXE_vane"))
        .arg("watch")
        .args(args)
        .args(["--config", file.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (at most 15 s) for the agent to exit; its code and output.
fn exited(mut child: std::process::Child) -> (Option<i32>, String) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return (out.status.code(), text);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    (None, "still running after 15 s".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_stop_the_agent_with_their_reason() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = app.url("");
    let dest = dir.path().join("out.conf");
    let resource = |token: &str| {
        format!(
            "[[resource]]\nname = \"api\"\nserver = \"{server}\"\ntoken = \"{token}\"\n\
             template = \"{{% for i in service('api') %}}{{{{ i.address }}}}{{% endfor %}}\"\ndestination = \"{}\"\n",
            dest.display()
        )
    };
    let (code, out) = exited(watch(dir.path(), &resource("vane_not_a_token"), &[]));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("refused the token"), "{out}");

    let elsewhere = app.make_token("elsewhere", "registrar", &["web-*"]).await;
    let register = |port: u16| {
        format!(
            "[[register]]\nserver = \"{server}\"\ntoken = \"{elsewhere}\"\nservice = \"api\"\ninstance_id = \"a\"\n\
             address = \"127.0.0.1\"\nport = {port}\ninterval_s = 1\nttl_s = 3\n"
        )
    };
    let (code, out) = exited(watch(dir.path(), &register(8080), &[]));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("vane refused it: 403"), "{out}");
    let (code, out) = exited(watch(dir.path(), &register(0), &["--dry-run"]));
    assert_eq!(code, Some(2), "refused when read: {out}");
    assert!(out.contains("port: must be 1 to 65535"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_listing_services_sees_a_new_one() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("names.txt");
    let body = json!({"address": "10.0.0.1", "port": 80, "ttl_s": 60});
    app.as_token(
        BEARER,
        Method::PUT,
        "/api/v1/services/first/instances/a",
        Some(body.clone()),
    )
    .await;
    let toml = format!(
        "[[resource]]\nname = \"names\"\nserver = \"{}\"\ntoken = \"{BEARER}\"\n\
         template = \"{{{{ services() | join(',') }}}}\"\ndestination = \"{}\"\n",
        app.url(""),
        dest.display()
    );
    let mut agent = watch(dir.path(), &toml, &[]);
    let read = || std::fs::read_to_string(&dest).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(10), || async { read() == "first" }).await,
        "{}",
        read()
    );
    app.as_token(BEARER, Method::PUT, "/api/v1/services/second/instances/a", Some(body))
        .await;
    let seen = eventually(Duration::from_secs(15), || async { read() == "first,second" }).await;
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(seen, "{}", read());
}
