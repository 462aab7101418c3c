//! Signing in and out, and what every page learns from the session.
//!
//! - Sign-in takes an API key; the session acts with that key's rights (`AccountKey`: a read-only key changes
//!   nothing, a scoped key sees its instances only) and ends when the key is revoked, when it expires
//!   (`CONSOLE_SESSION_LIFETIME`) or at sign-out, which deletes it from the store: a copied cookie is dead too.
//! - The browser holds the session's random secret in an `HttpOnly`, `SameSite=Strict` cookie on `/console`
//!   (`Secure` when the request arrived over HTTPS at a proxy that says so); the store holds its SHA-256.
//! - Every form carries a CSRF token derived from the session's secret, which a page of another origin can neither
//!   read nor compute; a form without the right token is refused, as is a post whose `Origin` is another host.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cookie::{Cookie, SameSite};
use maud::{Markup, html};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{ConsoleError, PageResult, Section, page, see_other};
use crate::AppState;
use crate::auth::{AccountKey, sha256_hex};
use crate::error::ApiError;
use crate::service::CONSOLE_SESSION_LIFETIME;

pub const SIGN_IN_PATH: &str = "/console/sign-in";
const SIGN_OUT_PATH: &str = "/console/sign-out";
const COOKIE: &str = "convene_session";
/// The form field that carries the CSRF token.
const CSRF_FIELD: &str = "csrf";

pub fn router() -> Router<AppState> {
    Router::new().route(SIGN_IN_PATH, get(sign_in_page).post(sign_in)).route(SIGN_OUT_PATH, post(sign_out))
}

/// A signed-in operator: the key the session acts with, and the token its forms carry.
pub struct Console {
    pub key: AccountKey,
    secret: String,
}

impl Console {
    /// The CSRF token for this session's forms.
    pub fn csrf(&self) -> String {
        csrf_token(&self.secret)
    }

    /// The hidden field every form of this session carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name=(CSRF_FIELD) value=(self.csrf()); }
    }

    /// May this key change anything? A read-only key's pages show no forms that change things.
    pub fn writes(&self) -> bool {
        !self.key.0.read_only
    }

    /// Is the session still live (not signed out, not expired, its key not revoked)? Live streams ask before
    /// each push.
    pub async fn still_signed_in(&self, state: &AppState) -> bool {
        matches!(state.service.keys().console_session(&self.secret).await, Ok(Some(_)))
    }

    /// May this key act for the whole account (create numbers, webhooks, the sandbox world)?
    pub fn account_wide(&self) -> bool {
        self.key.0.instance_ids.is_none()
    }
}

fn csrf_token(secret: &str) -> String {
    sha256_hex(format!("convene console csrf\0{secret}").as_bytes())
}

/// Equal in time independent of where they differ, so the comparison does not tell how much of a guess was right.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn session_secret(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == COOKIE)
        .map(|cookie| cookie.value().to_owned())
        .filter(|secret| !secret.is_empty())
}

/// The session's key, or `None` when there is no live session.
async fn session(
    parts: &Parts,
    state: &AppState,
) -> Result<Option<(String, convene_core::store::ApiKeyRecord)>, ApiError> {
    let Some(secret) = session_secret(&parts.headers) else { return Ok(None) };
    Ok(state.service.keys().console_session(&secret).await?.map(|key| (secret, key)))
}

/// Not signed in: pages send the browser to the sign-in page; live streams (which a browser would not follow
/// usefully) get a 401.
pub struct SignInFirst {
    stream: bool,
}

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        if self.stream {
            ApiError::Unauthorized("sign in to the console first").into_response()
        } else {
            see_other(SIGN_IN_PATH)
        }
    }
}

pub enum Rejection {
    SignIn(SignInFirst),
    Error(ConsoleError),
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn(r) => r.into_response(),
            Self::Error(e) => e.into_response(),
        }
    }
}

impl From<ApiError> for Rejection {
    fn from(e: ApiError) -> Self {
        Self::Error(e.into())
    }
}

impl FromRequestParts<AppState> for Console {
    type Rejection = Rejection;

    /// A page or a live stream (a GET): any live session may read.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Rejection> {
        let stream = parts.headers.get(header::ACCEPT).is_some_and(|a| a.as_bytes().starts_with(b"text/event-stream"));
        let Some((secret, key)) = session(parts, state).await? else {
            return Err(Rejection::SignIn(SignInFirst { stream }));
        };
        Ok(Self { key: AccountKey::permit(key, &Method::GET)?, secret })
    }
}

impl OptionalFromRequestParts<AppState> for Console {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, ConsoleError> {
        let Some((secret, key)) = session(parts, state).await? else { return Ok(None) };
        Ok(Some(Self { key: AccountKey::permit(key, &Method::GET)?, secret }))
    }
}

/// A posted form of a live session, its CSRF token checked, read as `T` (unknown fields, such as the token, are
/// ignored). The session's key must be allowed to change things: a read-only key gets a 403 page.
pub struct Submitted<T> {
    pub console: Console,
    pub form: T,
}

/// Reads a posted form: a live session, a post from this origin, the session's CSRF token, and the fields as `T`.
/// `changes` says whether the post changes the account (signing out does not, so a read-only key may).
async fn read_form<T: DeserializeOwned>(
    request: Request,
    state: &AppState,
    changes: bool,
) -> Result<(Console, T), Rejection> {
    let (parts, body) = request.into_parts();
    let Some((secret, key)) = session(&parts, state).await? else {
        return Err(Rejection::SignIn(SignInFirst { stream: false }));
    };
    same_origin(&parts.headers)?;
    let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
        .await
        .map_err(|e| ApiError::BadRequest(format!("could not read the form: {e}")))?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("the form is not application/x-www-form-urlencoded: {e}")))?;
    let token = fields.iter().find(|(name, _)| name == CSRF_FIELD).map(|(_, value)| value.as_str());
    if !token.is_some_and(|token| same_secret(token, &csrf_token(&secret))) {
        return Err(ApiError::Forbidden {
            code: "csrf",
            detail: "this form is stale or did not come from the console: reload the page and send it again".into(),
        }
        .into());
    }
    let form = serde_urlencoded::from_bytes(&bytes).map_err(|e| ApiError::BadRequest(format!("bad form: {e}")))?;
    let method = if changes { Method::POST } else { Method::GET };
    Ok((Console { key: AccountKey::permit(key, &method)?, secret }, form))
}

impl<T: DeserializeOwned> FromRequest<AppState> for Submitted<T> {
    type Rejection = Rejection;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Rejection> {
        let (console, form) = read_form(request, state, true).await?;
        Ok(Self { console, form })
    }
}

/// A browser sends `Origin` with every POST; one naming another host is a cross-site post, refused whatever it
/// carries. (No `Origin`: a client that is not a browser, which cannot hold the cookie's session by accident.)
fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin_host = origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, host)| host);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (origin_host, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err(ApiError::Forbidden {
            code: "cross_origin",
            detail: "the console takes forms from its own pages only".into(),
        }),
    }
}

/// The session cookie: `value` for `max_age`, or cleared. `Secure` when a proxy says the request came over HTTPS.
fn session_cookie(headers: &HeaderMap, value: &str, max_age: std::time::Duration) -> HeaderValue {
    let https = headers.get("x-forwarded-proto").is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = Cookie::build((COOKIE, value.to_owned()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/console")
        .secure(https)
        .max_age(cookie::time::Duration::seconds(i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX)))
        .build();
    HeaderValue::from_str(&cookie.to_string()).expect("a cookie of hex and fixed attributes is a valid header")
}

fn sign_in_form(error: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        Section::None,
        html! {
            h1 { "Sign in" }
            p { "Sign in with an API key (" code { "cvn_…" } "). The console acts with that key's rights: a read-only key sees but changes nothing; a key for some numbers sees only those." }
            @if let Some(error) = error {
                p.error #sign-in-error role="alert" { (error) }
            }
            form.stack method="post" action=(SIGN_IN_PATH) {
                label for="api-key" { "API key" }
                input #api-key type="password" name="api_key" autocomplete="current-password" required
                    autofocus aria-describedby=[error.map(|_| "sign-in-error")];
                button type="submit" { "Sign in" }
            }
        },
    )
}

async fn sign_in_page(console: Option<Console>) -> Response {
    match console {
        Some(_) => see_other(super::numbers::PATH),
        None => sign_in_form(None).into_response(),
    }
}

#[derive(Deserialize)]
struct SignIn {
    #[serde(default)]
    api_key: String,
}

/// Checks the key and starts a session. The sign-in form carries no CSRF token (there is no session yet); a post
/// from another origin is refused, so another site cannot sign a visitor in with its own key.
async fn sign_in(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> PageResult<Response> {
    same_origin(&headers)?;
    let form: SignIn =
        serde_urlencoded::from_bytes(&body).map_err(|e| ApiError::BadRequest(format!("bad form: {e}")))?;
    match state.service.keys().sign_in(&form.api_key).await {
        Ok((secret, _key)) => {
            let mut response = see_other(super::numbers::PATH);
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&headers, &secret, CONSOLE_SESSION_LIFETIME));
            Ok(response)
        }
        Err(ApiError::Unauthorized(_)) => {
            let mut response = sign_in_form(Some("That API key is not valid. Check it and try again.")).into_response();
            *response.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
            Ok(response)
        }
        Err(e) => Err(e.into()),
    }
}

/// Ends the session in the store and clears the cookie.
async fn sign_out(State(state): State<AppState>, request: Request) -> Result<Response, Rejection> {
    let headers = request.headers().clone();
    let (console, _): (Console, Vec<(String, String)>) = read_form(request, &state, false).await?;
    state.service.keys().sign_out(&console.secret).await?;
    let mut response = see_other(SIGN_IN_PATH);
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&headers, "", std::time::Duration::ZERO));
    Ok(response)
}

/// The navigation's right side: who is signed in, with which rights, and the sign-out button.
pub fn signed_in_as(console: &Console) -> Markup {
    let key = &console.key.0;
    html! {
        div.who {
            span { "Key " strong { (key.name) } " (" code { (key.prefix) "…" } ")" }
            @if key.read_only { span.badge { "read-only" } }
            @if key.instance_ids.is_some() { span.badge { "some numbers" } }
            form method="post" action=(SIGN_OUT_PATH) {
                (console.csrf_field())
                button.link type="submit" { "Sign out" }
            }
        }
    }
}
