//! `GET /v1/models` and `GET /v1/models/{id}`: the one model this server serves.

use crate::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

fn card(ready: &crate::Ready) -> Value {
    json!({
        "id": ready.model_id,
        "object": "model",
        "created": ready.created,
        "owned_by": "memwall",
        "max_model_len": ready.context,
    })
}

pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let ready = state.ready()?;
    Ok(Json(json!({"object": "list", "data": [card(ready)]})))
}

pub async fn get_one(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let ready = state.ready()?;
    if id != ready.model_id {
        return Err(ApiError::model_not_found(&id, &ready.model_id));
    }
    Ok(Json(card(ready)))
}

/// Checks a request's `model` field: absent or the served id.
pub fn check_model(ready: &crate::Ready, model: Option<&str>) -> Result<(), ApiError> {
    match model {
        Some(m) if m != ready.model_id => Err(ApiError::model_not_found(m, &ready.model_id)),
        _ => Ok(()),
    }
}
