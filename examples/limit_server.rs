//! The "limit": an HTTP server on the same stack (tokio, axum) that answers
//! every `POST /config/{id}` with fixed bytes (a real Vane response captured
//! by the load test) and does no other work. Vane's figures are reported as a
//! ratio to this one, measured in the same run.
//!
//!     cargo run --release --example limit_server -- 127.0.0.1:18182 body.json

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;

/// The same allocator as `vane`, so the limit is not handicapped.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18182".into());
    let body = Bytes::from(std::fs::read(args.next().unwrap_or_else(|| "body.json".into()))?);
    let app = Router::new().route(
        "/config/{id}",
        post(move |_: Bytes| {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
