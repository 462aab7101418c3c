//! The routes the nodes on one database call each other on (`service::remote`); not part of the API: not in the
//! OpenAPI document, refused to anyone without the nodes' shared token (checked before the body is read), and
//! answered only by a node that shares its database with others.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use convene_core::{ConnectorError, GroupPicture, InstanceId};
use serde::Deserialize;

use crate::AppState;
use crate::service::remote::{self, ConnectorAnswer, ConnectorCall};

pub fn router(state: AppState) -> axum::Router<AppState> {
    axum::Router::new()
        .route(remote::CALL_PATH, post(connector_call))
        .route(remote::FORGET_PATH, post(forget))
        .route(remote::STATES_PATH, post(states))
        // A group picture (up to 5 MiB) travels in base64, in JSON: a larger limit, for the nodes only.
        .layer(DefaultBodyLimit::max(GroupPicture::MAX_BYTES * 4 / 3 + 64 * 1024))
        .route_layer(axum::middleware::from_fn_with_state(state, refuse_outsiders))
}

/// What a node-to-node route refuses with.
type Refusal = (StatusCode, String);

/// 401 unless the caller is a node of this database, before anything of the request's body is read.
async fn refuse_outsiders(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let authorization = request.headers().get(header::AUTHORIZATION).and_then(|h| h.to_str().ok());
    if state.service.instances().admits_node(authorization) {
        next.run(request).await
    } else {
        (StatusCode::UNAUTHORIZED, "not a node of this database").into_response()
    }
}

fn read<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))
}

/// Runs a connector call on this node's own connection to the number; a number this node does not run (its lease
/// moved meanwhile) is answered `not_connected`, which the calling node passes on.
async fn connector_call(State(state): State<AppState>, Path(id): Path<i64>, body: Bytes) -> Result<Response, Refusal> {
    let call: ConnectorCall = read(&body)?;
    let answer = match state.service.instances().local_connector(InstanceId(id)) {
        Ok(connector) => remote::answer(connector.as_ref(), call).await,
        Err(_) => ConnectorAnswer::Error(ConnectorError::NotConnected(format!(
            "instance {id} is not run by the node the call was handed to (its lease moved); try again"
        ))),
    };
    Ok(Json(answer).into_response())
}

#[derive(Deserialize)]
struct Forget {
    kind: String,
}

/// Forgets an instance another node deleted: a real number's session unlinks and its keys are deleted.
async fn forget(State(state): State<AppState>, Path(id): Path<i64>, body: Bytes) -> Result<Response, Refusal> {
    let Forget { kind } = read(&body)?;
    Ok(match state.service.instances().forget_deleted(InstanceId(id), &kind).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    })
}

/// The states of the numbers asked about that this node runs, as `[id, state]` pairs.
async fn states(State(state): State<AppState>, body: Bytes) -> Result<Response, Refusal> {
    let ids: Vec<i64> = read(&body)?;
    let mut states = Vec::new();
    for id in ids {
        if let Ok(connector) = state.service.instances().local_connector(InstanceId(id)) {
            states.push((id, connector.state().await));
        }
    }
    Ok(Json(states).into_response())
}
