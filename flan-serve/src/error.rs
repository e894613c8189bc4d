//! The crate's error, and the HTTP error a request gets.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// What can stop the server from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address could not be bound.
    #[error("binding {addr}")]
    Bind {
        /// `host:port`.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("serving HTTP")]
    Serve(#[source] std::io::Error),
    /// The model thread could not be started.
    #[error("starting the model thread")]
    Thread(#[source] std::io::Error),
}

/// The crate's result.
pub type Result<T> = std::result::Result<T, Error>;

/// Which API's error shape a response takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// TGI's `{"error": "...", "error_type": "..."}` (and flan's own endpoints).
    Tgi,
    /// OpenAI's `{"error": {"message", "type", "param", "code"}}`.
    OpenAi,
}

/// An HTTP error: status, a message that names what was wrong, and its kind.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What was wrong (names the field or the limit).
    pub message: String,
    /// `validation`, `malformed`, `overloaded`, `timeout`, `unavailable`, `model`.
    pub kind: &'static str,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
    /// The response's shape.
    pub dialect: Dialect,
}

impl ApiError {
    /// An error of `status` and `kind`.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            retry_after: None,
            dialect: Dialect::Tgi,
        }
    }

    /// 422: a well-formed request the server will not run (a limit, a bad value).
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", message)
    }

    /// 400: not JSON, or a field of the wrong type.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed", message)
    }

    /// In `dialect`'s shape.
    pub fn in_dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        match self.dialect {
            Dialect::Tgi => serde_json::json!({"error": self.message, "error_type": self.kind}),
            Dialect::OpenAi => serde_json::json!({"error": {
                "message": self.message,
                "type": self.kind,
                "param": null,
                "code": self.status.as_u16(),
            }}),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(seconds));
        }
        response
    }
}
