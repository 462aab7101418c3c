//! Router tests without a socket (`oneshot`).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use convene_core::ManualClock;
use convene_server::AppState;
use tower::ServiceExt as _;

#[tokio::test]
async fn health_and_auth_work_without_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _database) = crate::helpers::test_config(dir.path()).await;
    let state = AppState::open(&config, Arc::new(ManualClock::new(crate::helpers::START))).await.unwrap();
    let key = state.service.bootstrap(false).await.unwrap().unwrap().api_key;
    let app = convene_server::router(state, config.max_body_bytes);

    let res = app.clone().oneshot(Request::get("/healthz").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.clone().oneshot(Request::get("/v1/instances").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let req =
        Request::get("/v1/instances").header("authorization", format!("Bearer {key}")).body(Body::empty()).unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    assert_eq!(&body[..], br#"{"items":[],"next_cursor":null}"#, "no instance was bootstrapped");
}
