//! Forwarded addresses and health signals (issue 34): a client address
//! header is believed only from a trusted proxy, so a machine that names
//! twenty networks in `X-Forwarded-For` is still one, while twenty networks
//! behind a real proxy still break a version. Native and original routes,
//! every backend.

use serde_json::json;

use crate::common::networks::{Net, Route};
use crate::common::{Backend, TestApp};
use crate::forgery::{config_for, crash, health};

backend_tests!(
    spoofed_forwarding_headers_count_as_the_machine_that_sent_them,
    a_crash_across_twenty_networks_behind_a_trusted_proxy_breaks,
);

/// `server.client_address_header` set with no trusted proxy (the start-up
/// warns): one machine claiming twenty networks in `X-Forwarded-For`, each
/// fetching and reporting, is still one served and one counted network.
async fn spoofed_forwarding_headers_count_as_the_machine_that_sent_them(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.server.client_address_header = "x-forwarded-for".into()).await
    else {
        return;
    };
    let liars: Vec<Net> = (1..=20)
        .map(|n| Net::forwarding(&app, 0, &format!("10.{n}.0.7")))
        .collect();
    for route in Route::BOTH {
        let id = config_for(route, "spoofed");
        let (secret, code_ids) = app.config_with(&id, &[1, 2]).await;
        let v2 = &code_ids[1];
        for (i, net) in liars.iter().enumerate() {
            let (_, served) = net.fetch(route, &id, &format!("phone-{i}")).await;
            assert_eq!(served.unwrap().1, json!(2));
            let (status, _) = net.report(route, &id, &secret, v2, &format!("phone-{i}")).await;
            assert!(status.is_success());
        }
        assert_eq!(
            health(&app, &id, v2).await,
            [json!(false), json!(1), json!(1)],
            "{route:?}"
        );
    }
    app.stop().await;
}

/// The same twenty networks' crash as above, but every client behind one
/// trusted proxy (127.0.0.1, which names each in `X-Forwarded-For`): the
/// header is believed, so the networks it names count, and the tenth breaks
/// the version and rolls it back.
async fn a_crash_across_twenty_networks_behind_a_trusted_proxy_breaks(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.server.client_address_header = "x-forwarded-for".into();
        s.server.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await
    else {
        return;
    };
    // A client may put anything before its real address; the proxy appends
    // the address it saw, the right-most untrusted one, which counts.
    let fleet: Vec<Net> = (1..=20)
        .map(|n| Net::forwarding(&app, 0, &format!("10.99.0.1, 10.{n}.0.7")))
        .collect();
    for route in Route::BOTH {
        let id = config_for(route, "proxied");
        crash(&app, &fleet, route, &id).await;
        assert_eq!(fleet[0].fetch(route, &id, "phone-0").await.1.unwrap().1, json!(1));
    }
    app.stop().await;
}
