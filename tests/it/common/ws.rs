//! A small WebSocket client for the push routes.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use super::TestApp;

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub const WAIT: Duration = Duration::from_secs(10);

pub fn ws_url(app: &TestApp, path: &str) -> String {
    format!("ws://{}{path}", app.addr)
}

pub async fn native_socket(app: &TestApp) -> Socket {
    connect_async(ws_url(app, "/api/v1/subscribe")).await.unwrap().0
}

/// Reads the next text frame as JSON, answering pings on the way.
pub async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a frame in time");
        match frame.expect("socket open").expect("frame") {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// Reads until an update for `config_id` with at least `revision` arrives.
pub async fn until_revision(socket: &mut Socket, config_id: &str, revision: i64) -> Value {
    loop {
        let message = next_json(socket).await;
        if message["type"] == json!("update")
            && message["config_id"] == json!(config_id)
            && message["revision"].as_i64().unwrap() >= revision
        {
            return message;
        }
    }
}

/// Sends a subscribe message and returns the reply to it (skipping updates).
pub async fn subscribe(socket: &mut Socket, config_id: &str, secret: &str, revision: Option<i64>) -> Value {
    let message = json!({"type": "subscribe", "config_id": config_id, "secret": secret, "revision": revision});
    socket.send(Message::text(message.to_string())).await.unwrap();
    loop {
        let reply = next_json(socket).await;
        if reply["type"] != json!("update") {
            return reply;
        }
    }
}

/// Opens the original push socket; `Err` carries the refusal's status.
pub async fn compat_socket(app: &TestApp, config_id: &str, secret: Option<&str>) -> Result<Socket, StatusCode> {
    let mut request = ws_url(app, &format!("/push/{config_id}"))
        .into_client_request()
        .unwrap();
    if let Some(secret) = secret {
        request.headers_mut().insert("Secret", secret.parse().unwrap());
    }
    match connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Http(response)) => Err(StatusCode::from_u16(response.status().as_u16()).unwrap()),
        Err(e) => panic!("{e}"),
    }
}

/// Reads until the server closes the socket, within `wait`; the close
/// frame's code, `None` for a close without one or a dropped connection.
/// Panics if the socket is still open after `wait`.
pub async fn close_code(socket: &mut Socket, wait: Duration) -> Option<u16> {
    let closed = tokio::time::timeout(wait, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    });
    closed.await.expect("the socket was still open")
}
