//! The operator's console under `/console`: pages rendered on the server (maud), plain HTML forms that work without
//! script, and live regions that htmx's server-sent-events extension swaps in as the server pushes them.
//!
//! Why this shape: `cargo build` stays the only build step (no Node toolchain, no bundler), every page is usable by
//! keyboard and without JavaScript, and what the page shows is computed by the same service calls, under the same key
//! rules (`crate::auth::AccountKey`), as the API. The two scripts are vendored files served from here (see
//! `assets/README.md`), so the Content-Security-Policy allows this origin only and nothing loads from the internet.

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::AppState;
use crate::error::ApiError;

mod assets;
mod campaigns;
mod events;
mod groups;
mod numbers;
mod sandbox;
mod session;
mod time;
mod webhooks;

pub use session::Console;

/// The console's pages and assets, and `/`, which leads to them.
pub fn router() -> Router<AppState> {
    let pages = Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .merge(session::router())
        .merge(numbers::router())
        .merge(groups::router())
        .merge(campaigns::router())
        .merge(webhooks::router())
        .merge(events::router())
        .merge(sandbox::router())
        .route_layer(axum::middleware::map_request(crate::request_log::note_dialect("console")))
        .layer(axum::middleware::from_fn(security_headers));
    Router::new().route("/", get(|| async { Redirect::to("/console/") })).merge(pages).merge(assets::router())
}

async fn home(console: Option<Console>) -> Redirect {
    match console {
        Some(_) => Redirect::to(numbers::PATH),
        None => Redirect::to(session::SIGN_IN_PATH),
    }
}

/// What every console page answers with: scripts, styles, images and connections from this origin only; no inline
/// script or style, no frames, forms that post here only; and no caching of pages that show an account's data.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Which part of the console a page belongs to, for the navigation's current-page mark.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Numbers,
    Groups,
    Campaigns,
    Webhooks,
    Events,
    Sandbox,
    None,
}

/// A whole page: head, navigation (when signed in), and `body` as its main content.
fn page(title: &str, console: Option<&Console>, section: Section, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx adds an inline <style> for indicators unless told not to; the policy would refuse it.
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;
                title { (title) " · Convene" }
                link rel="stylesheet" href=(assets::STYLESHEET.as_str());
                link rel="icon" href=(assets::ICON.as_str()) type="image/svg+xml";
                script src=(assets::HTMX) defer {}
                script src=(assets::HTMX_SSE) defer {}
                script src=(assets::SCRIPT.as_str()) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/console/" { "Convene" }
                    @if let Some(console) = console {
                        nav aria-label="Console" {
                            a href=(numbers::PATH) aria-current=[(section == Section::Numbers).then_some("page")] { "Numbers" }
                            a href=(groups::PATH) aria-current=[(section == Section::Groups).then_some("page")] { "Groups" }
                            a href=(campaigns::PATH) aria-current=[(section == Section::Campaigns).then_some("page")] { "Campaigns" }
                            // Endpoints and the sandbox belong to the whole account: a key for some numbers cannot
                            // open them.
                            @if console.account_wide() {
                                a href=(webhooks::PATH) aria-current=[(section == Section::Webhooks).then_some("page")] { "Webhooks" }
                            }
                            a href=(events::PATH) aria-current=[(section == Section::Events).then_some("page")] { "Events" }
                            @if console.account_wide() {
                                a href=(sandbox::PATH) aria-current=[(section == Section::Sandbox).then_some("page")] { "Sandbox" }
                            }
                            a href="/docs/" { "API docs" }
                        }
                        (session::signed_in_as(console))
                    }
                }
                main #main { (body) }
            }
        }
    }
}

/// An error as a page: the status the API would answer, its words, and the cause attached for the request log.
pub struct ConsoleError(ApiError);

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<convene_core::DbError> for ConsoleError {
    fn from(e: convene_core::DbError) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let detail = match &self.0 {
            ApiError::Internal(_) => "Something went wrong on the server; its log has the cause.".to_owned(),
            ApiError::Validation(fields) => field_words(fields),
            other => other.to_string(),
        };
        // The API's answer gives the status, `Retry-After` and the cause for the log; the body becomes a page.
        let (mut parts, _) = self.0.into_response().into_parts();
        parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        let title = parts.status.canonical_reason().unwrap_or("Error");
        let body = page(
            title,
            None,
            Section::None,
            html! {
                h1 { (title) }
                p.error role="alert" { (detail) }
                p { a href="/console/" { "Back to the console" } }
            },
        );
        Response::from_parts(parts, axum::body::Body::from(body.into_string()))
    }
}

pub type PageResult<T = Markup> = Result<T, ConsoleError>;

/// Bad fields in one line, each named: what a page shows above the form that sent them.
fn field_words(fields: &[crate::error::FieldError]) -> String {
    fields.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; ")
}

/// A 303 to `to`: where a form that changed something sends the browser, so a reload does not post it again.
fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

/// A question asked before something that cannot be undone: what happens, a button that posts to `action`, and a
/// way back to `back`.
struct Confirm<'a> {
    question: String,
    what_happens: &'a str,
    action: String,
    button: String,
    back: &'a str,
}

impl Confirm<'_> {
    /// The question as a page, `crumbs` leading to the thing it is about.
    fn page(&self, console: &Console, section: Section, crumbs: Markup) -> Markup {
        page(
            &self.question,
            Some(console),
            section,
            html! {
                nav.crumbs aria-label="Breadcrumb" { (crumbs) }
                h1 { (self.question) }
                p { (self.what_happens) }
                div.actions {
                    form method="post" action=(self.action) {
                        (console.csrf_field())
                        button.danger type="submit" { (self.button) }
                    }
                    a.button href=(self.back) { "Cancel" }
                }
            },
        )
    }
}

/// An inline SVG QR code (the document's XML declaration dropped), labelled for screen readers.
fn inline_svg(svg: &str, label: &str) -> Markup {
    let start = svg.find("<svg").unwrap_or(0);
    let tag = format!("<svg role=\"img\" aria-label=\"{}\"", html! { (label) }.into_string());
    PreEscaped(svg[start..].replacen("<svg", &tag, 1))
}
