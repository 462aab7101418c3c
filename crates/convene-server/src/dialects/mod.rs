//! The hosted gateways' own HTTP APIs, so their customers move over by changing a base URL: 2Chat, Z-API, Green API
//! and Wawp. A dialect only translates — it parses the provider's request, calls the group service, and shapes the
//! provider's response and errors. No validation, pacing or outcome rule is written here.

use axum::Router;

use crate::AppState;

mod common;
pub mod green;
pub mod twochat;
pub mod wawp;
pub mod zapi;

/// Every dialect's routes; they live at their providers' own paths, beside `/v1`.
pub fn router() -> Router<AppState> {
    use axum::middleware::map_request;
    use common::Shape as _;

    use crate::request_log::note_dialect;

    // Each dialect's routes name it for the request log.
    Router::new()
        .merge(green::router().route_layer(map_request(note_dialect("green"))))
        .merge(zapi::router().route_layer(map_request(note_dialect(zapi::Zapi::NAME))))
        .merge(twochat::router().route_layer(map_request(note_dialect(twochat::TwoChat::NAME))))
        .merge(wawp::router().route_layer(map_request(note_dialect(wawp::Wawp::NAME))))
}
