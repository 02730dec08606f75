//! API keys: `Authorization: Bearer <key>` (or `x-api-key`) checked in
//! constant time against every configured key, so response timing does not
//! reveal how much of a guess was right.

use crate::{ApiError, AppState};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub async fn require_key(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let keys = &state.config.api_keys;
    if keys.is_empty() {
        return next.run(req).await;
    }
    let headers = req.headers();
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim);
    match given {
        Some(g) if key_matches(keys, g) => next.run(req).await,
        _ => ApiError::unauthorized().into_response(),
    }
}

/// Whether `given` equals one of `keys`; every key is compared, each in
/// constant time for its length.
fn key_matches(keys: &[String], given: &str) -> bool {
    let mut ok = subtle::Choice::from(0u8);
    for k in keys {
        ok |= k.as_bytes().ct_eq(given.as_bytes());
    }
    ok.into()
}

#[cfg(test)]
mod tests {
    use super::key_matches;

    #[test]
    fn matches_only_exact_keys() {
        let keys = vec!["secret-1".to_string(), "other".to_string()];
        assert!(key_matches(&keys, "secret-1"));
        assert!(key_matches(&keys, "other"));
        assert!(!key_matches(&keys, "secret-"));
        assert!(!key_matches(&keys, "secret-12"));
        assert!(!key_matches(&keys, ""));
    }
}
