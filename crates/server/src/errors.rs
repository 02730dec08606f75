//! Errors in OpenAI's JSON shape: `{"error": {"message", "type", "param",
//! "code"}}` with the HTTP status that goes with them.
//!
//! Every way a request can fail maps to one [`ApiError`]; handlers return
//! `Result<_, ApiError>` and never panic on user input. Statuses follow the
//! OpenAI API: 400 invalid parameter (naming it), 401 bad key, 404 unknown
//! route or model, 413 body too large, 429 queue full, 503 not ready.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use memwall_engine::EngineError;
use serde_json::json;

/// One failed request, ready to be sent.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `not_found_error`, …
    pub kind: &'static str,
    /// The request parameter at fault, if one is.
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), kind, param: None, code: None }
    }

    /// 400 about parameter `param`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError { param: Some(param.into()), ..Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message) }
    }

    /// 400 not tied to one parameter (e.g. malformed JSON).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError {
            code: Some("invalid_api_key"),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "missing or invalid API key: send `Authorization: Bearer <key>`",
            )
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "not_found_error", message)
    }

    pub fn model_not_found(model: &str, served: &str) -> ApiError {
        ApiError {
            param: Some("model".into()),
            code: Some("model_not_found"),
            ..Self::not_found(format!("the model `{model}` does not exist; this server serves `{served}`"))
        }
    }

    pub fn method_not_allowed() -> ApiError {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "invalid_request_error", "method not allowed on this route")
    }

    pub fn too_large(limit: usize) -> ApiError {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("the request body is larger than the server's limit of {limit} bytes"),
        )
    }

    pub fn queue_full(limit: usize) -> ApiError {
        ApiError {
            code: Some("queue_full"),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!("the server already has {limit} requests in flight; retry later"),
            )
        }
    }

    pub fn too_many_connections(limit: usize) -> ApiError {
        ApiError {
            code: Some("too_many_connections"),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                format!("the server already serves {limit} connections (--max-connections); retry later"),
            )
        }
    }

    pub fn loading() -> ApiError {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", "the model is still loading; retry shortly")
    }

    pub fn shutting_down() -> ApiError {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", "the server is shutting down")
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// Maps an engine refusal; `prompt_param` names the field holding the
    /// prompt (`messages` or `prompt`).
    pub fn from_engine(e: EngineError, prompt_param: &str) -> ApiError {
        let msg = e.to_string();
        match e {
            EngineError::EmptyPrompt | EngineError::TokenOutOfRange { .. } => Self::invalid(prompt_param, msg),
            EngineError::PromptTooLong { .. } => {
                ApiError { code: Some("context_length_exceeded"), ..Self::invalid(prompt_param, msg) }
            }
            EngineError::NoTokensWanted | EngineError::NeverFits { .. } => Self::invalid("max_tokens", msg),
            EngineError::NoSamples => Self::invalid("n", msg),
            EngineError::TooManyLogprobs { .. } => Self::invalid("top_logprobs", msg),
            EngineError::Sampling(s) => {
                let param = match &s {
                    memwall_engine::sampler::SamplingError::InvalidParam { name, .. } => name.to_string(),
                    #[allow(unreachable_patterns)]
                    _ => "temperature".to_string(),
                };
                Self::invalid(param, s.to_string())
            }
            EngineError::ShutDown => Self::shutting_down(),
            EngineError::KvTooSmall(_) | EngineError::Failed(_) => Self::internal(msg),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut resp = (status, axum::Json(self.body())).into_response();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body stays unread, so hyper closes the
            // connection after this answer; say so, or a keep-alive client
            // sends its next request into a closing socket.
            resp.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        }
        // The access log reads the status; record the cause for it.
        resp.extensions_mut().insert(self);
        resp
    }
}
