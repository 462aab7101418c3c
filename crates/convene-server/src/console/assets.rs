//! The console's static files, compiled into the binary. Their names carry a version (the vendored scripts') or a
//! content hash (ours), so browsers may keep them for a year: a changed file is a new name.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;
use crate::error::ApiError;

pub const HTMX: &str = "/console/assets/htmx-2.0.11.min.js";
pub const HTMX_SSE: &str = "/console/assets/htmx-ext-sse-2.2.4.js";
const HTMX_JS: &str = include_str!("assets/htmx-2.0.11.min.js");
const HTMX_SSE_JS: &str = include_str!("assets/htmx-ext-sse-2.2.4.js");
const CONSOLE_CSS: &str = include_str!("assets/console.css");
const CONSOLE_JS: &str = include_str!("assets/console.js");
const ICON_SVG: &str = include_str!("assets/icon.svg");

/// `/console/assets/console-<hash>.css`: the name changes with the content.
pub static STYLESHEET: LazyLock<String> =
    LazyLock::new(|| format!("/console/assets/console-{}.css", &crate::auth::sha256_hex(CONSOLE_CSS.as_bytes())[..12]));

/// `/console/assets/console-<hash>.js`: our own few lines (copy buttons).
pub static SCRIPT: LazyLock<String> =
    LazyLock::new(|| format!("/console/assets/console-{}.js", &crate::auth::sha256_hex(CONSOLE_JS.as_bytes())[..12]));

/// `/console/assets/icon-<hash>.svg`, the tab's icon (without it, browsers ask for `/favicon.ico`).
pub static ICON: LazyLock<String> =
    LazyLock::new(|| format!("/console/assets/icon-{}.svg", &crate::auth::sha256_hex(ICON_SVG.as_bytes())[..12]));

pub fn router() -> Router<AppState> {
    Router::new().route("/console/assets/{name}", get(asset))
}

async fn asset(Path(name): Path<String>) -> Response {
    let path = format!("/console/assets/{name}");
    let (body, content_type) = if path == HTMX {
        (HTMX_JS, "text/javascript; charset=utf-8")
    } else if path == HTMX_SSE {
        (HTMX_SSE_JS, "text/javascript; charset=utf-8")
    } else if path == *STYLESHEET {
        (CONSOLE_CSS, "text/css; charset=utf-8")
    } else if path == *SCRIPT {
        (CONSOLE_JS, "text/javascript; charset=utf-8")
    } else if path == *ICON {
        (ICON_SVG, "image/svg+xml")
    } else {
        return ApiError::NotFound(format!("no console asset {name}")).into_response();
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}
