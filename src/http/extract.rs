//! JSON bodies parsed with our own errors. The content type is not required:
//! the original service's clients do not always send one.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::{ApiError, CompatError};

pub struct Body<T>(pub T);

pub struct CompatBody<T>(pub T);

async fn parse<T: DeserializeOwned, S: Send + Sync>(req: Request, state: &S) -> Result<T, ApiError> {
    let bytes = Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge("request body is too large".into())
        } else {
            ApiError::bad_request("malformed_body", format!("could not read body: {e}"))
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("malformed_body", format!("malformed JSON body: {e}")))
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse(req, state).await.map(Body)
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for CompatBody<T> {
    type Rejection = CompatError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse(req, state).await.map(CompatBody).map_err(CompatError)
    }
}
