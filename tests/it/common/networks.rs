//! Clients from distinct networks on one machine: the whole of 127.0.0.0/8
//! is loopback, so a client bound to 127.0.N.1 reaches the server at
//! 127.0.0.1 from network 127.0.N.0/24, the source Vane counts. Each fetches
//! and reports on the native or the original route.

use std::net::{IpAddr, Ipv4Addr};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::TestApp;

/// Which of the two client protocols a request takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /api/v1/configs/{id}/evaluate` and `.../reports`.
    Native,
    /// `POST /config/{id}` and `POST /report/{id}/{code_id}`.
    Original,
}

impl Route {
    pub const BOTH: [Route; 2] = [Route::Native, Route::Original];
}

/// A client whose connections come from 127.0.`n`.1.
pub struct Net {
    pub client: reqwest::Client,
    base: String,
}

impl Net {
    /// The network 127.0.`n`.0/24 (`n` 0 is the tests' usual client's).
    pub fn new(app: &TestApp, n: u8) -> Self {
        let client = reqwest::Client::builder()
            .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, n, 1)))
            .build()
            .unwrap();
        Self {
            client,
            base: app.url(""),
        }
    }

    /// A client at 127.0.`n`.1 whose every request says, in
    /// `X-Forwarded-For`, that it forwards for `client`: a proxy when
    /// 127.0.`n`.1 is trusted, a liar when it is not.
    pub fn forwarding(app: &TestApp, n: u8, client: &str) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-forwarded-for", client.parse().unwrap());
        let client = reqwest::Client::builder()
            .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, n, 1)))
            .default_headers(headers)
            .build()
            .unwrap();
        Self {
            client,
            base: app.url(""),
        }
    }

    /// `count` networks from 127.0.`first`.0/24 on.
    pub fn many(app: &TestApp, first: u8, count: u8) -> Vec<Self> {
        (first..first + count).map(|n| Self::new(app, n)).collect()
    }

    /// A fetch as `device`: the status and `(code_id, result)` where it
    /// succeeded (the original route's result is its JSON text, parsed).
    pub async fn fetch(&self, route: Route, config_id: &str, device: &str) -> (StatusCode, Option<(String, Value)>) {
        let body = json!({"meta": {"platform": "ios", "device_id": device}, "cached": false});
        let path = match route {
            Route::Native => format!("/api/v1/configs/{config_id}/evaluate"),
            Route::Original => format!("/config/{config_id}"),
        };
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, body) = super::read(response).await;
        if status != StatusCode::OK {
            return (status, None);
        }
        let served = match route {
            Route::Native => (body["code_id"].as_str().unwrap().to_owned(), body["result"].clone()),
            Route::Original => (
                body["data"]["code_id"].as_str().unwrap().to_owned(),
                serde_json::from_str(body["data"]["result"].as_str().unwrap()).unwrap(),
            ),
        };
        (status, Some(served))
    }

    /// A `client` report as `device`: the status and, on the native route,
    /// the receipt (the original answers `{"data":"","message":"success"}`).
    pub async fn report(
        &self,
        route: Route,
        config_id: &str,
        secret: &str,
        code_id: &str,
        device: &str,
    ) -> (StatusCode, Value) {
        let (path, body) = match route {
            Route::Native => (
                format!("/api/v1/configs/{config_id}/reports"),
                json!({"code_id": code_id, "device_id": device, "message": "NullPointerException"}),
            ),
            Route::Original => (
                format!("/report/{config_id}/{code_id}"),
                json!({"err_time": 1_700_000_000, "message": "NullPointerException"}),
            ),
        };
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Secret", secret)
            .json(&body);
        super::read(request.send().await.unwrap()).await
    }
}
