//! The routes the nodes on one database call each other on (`service::remote`); not part of the API: not in the
//! OpenAPI document, refused to anyone without the nodes' shared token, and answered only by a node that shares its
//! database with others.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use convene_core::{ConnectorError, InstanceId};

use crate::AppState;
use crate::service::remote::{self, ConnectorAnswer, ConnectorCall};

pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route(remote::CALL_PATH, post(connector_call))
}

/// Runs a connector call on this node's own connection to the number; a number this node does not run (its lease
/// moved meanwhile) is answered `not_connected`, which the calling node passes on.
async fn connector_call(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Json(call): Json<ConnectorCall>,
) -> Response {
    let instances = state.service.instances();
    let authorization = headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok());
    if !instances.admits_node(authorization) {
        return (StatusCode::UNAUTHORIZED, "not a node of this database").into_response();
    }
    let answer = match instances.local_connector(InstanceId(id)) {
        Ok(connector) => remote::answer(connector.as_ref(), call).await,
        Err(_) => ConnectorAnswer::Error(ConnectorError::NotConnected(format!(
            "instance {id} is not run by the node the call was handed to (its lease moved); try again"
        ))),
    };
    Json(answer).into_response()
}
