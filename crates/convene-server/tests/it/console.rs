//! The console over real HTTP, as a browser without script would use it: signing in and out, sessions that end
//! for real, CSRF on every form, what read-only and scoped keys see, the numbers pages and their live streams.
//! (tests/console in the `convene` crate drives the same pages in headless Chromium.)

use std::time::Duration;

use convene_core::InstanceId;
use convene_server::auth::KeyGrant;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};

use crate::helpers::{TestApp, spawn_app};

/// A browser's view of the console: no redirects followed, the session cookie carried by hand.
pub(crate) struct Browser<'a> {
    app: &'a TestApp,
    pub(crate) client: reqwest::Client,
    pub(crate) cookie: Option<String>,
}

impl<'a> Browser<'a> {
    pub(crate) fn new(app: &'a TestApp) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Self { app, client, cookie: None }
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, String, reqwest::header::HeaderMap) {
        let mut request = self.client.get(self.app.url(path));
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        (status, response.text().await.unwrap(), headers)
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, String, reqwest::header::HeaderMap) {
        let mut request = self
            .client
            .post(self.app.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap());
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        (status, response.text().await.unwrap(), headers)
    }

    /// Signs in with `key`; panics unless the console takes it.
    pub(crate) async fn sign_in(&mut self, key: &str) -> String {
        let (status, _, headers) = self.post("/console/sign-in", &[("api_key", key)]).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[LOCATION], "/console/numbers");
        let set_cookie = headers[SET_COOKIE].to_str().unwrap().to_owned();
        let pair = set_cookie.split(';').next().unwrap().to_owned();
        self.cookie = Some(pair);
        set_cookie
    }

    /// The CSRF token of the forms on `path`.
    pub(crate) async fn csrf(&self, path: &str) -> String {
        let (status, html, _) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        attribute_after(&html, r#"name="csrf" value=""#).expect("a form with a CSRF token")
    }
}

/// The text from right after `marker` up to the next `"`.
pub(crate) fn attribute_after(html: &str, marker: &str) -> Option<String> {
    let start = html.find(marker)? + marker.len();
    Some(html[start..].split('"').next()?.to_owned())
}

#[tokio::test]
async fn without_a_session_every_page_leads_to_sign_in_and_streams_are_refused() {
    // Arrange
    let app = spawn_app().await;
    let browser = Browser::new(&app);

    // Act + Assert
    let (status, _, headers) = browser.get("/").await;
    assert!(status.is_redirection() && headers[LOCATION] == "/console/", "{status}");
    for path in ["/console/", "/console/numbers", &format!("/console/numbers/{}", app.instance_id)] {
        let (status, _, headers) = browser.get(path).await;
        assert_eq!(
            (status, headers[LOCATION].to_str().unwrap()),
            (StatusCode::SEE_OTHER, "/console/sign-in"),
            "{path}"
        );
    }
    let stream = browser
        .client
        .get(app.url("/console/numbers/live"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::UNAUTHORIZED, "an EventSource is told to stop, not redirected");
    let (status, html, headers) = browser.get("/console/sign-in").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"name="api_key""#), "{html}");
    let csp = headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
}

#[tokio::test]
async fn a_wrong_key_is_refused_and_a_right_one_opens_a_session_that_sign_out_ends_everywhere() {
    // Arrange
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);

    // Act: a wrong key.
    let (status, html, headers) = browser.post("/console/sign-in", &[("api_key", "cvn_wrong")]).await;

    // Assert
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("not valid"), "{html}");
    assert!(headers.get(SET_COOKIE).is_none());

    // Act: the right key.
    let set_cookie = browser.sign_in(&app.api_key).await;

    // Assert: the cookie is out of script's and other sites' reach, and holds no API key.
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set_cookie.contains(attribute), "{attribute} missing: {set_cookie}");
    }
    assert!(!set_cookie.contains(&app.api_key));
    let (status, html, _) = browser.get("/console/numbers").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&app.instance_phone), "the bootstrap number is listed: {html}");

    // Act: sign out, then try the copied cookie again.
    let copied = browser.cookie.clone();
    let csrf = browser.csrf("/console/numbers").await;
    let (status, _, headers) = browser.post("/console/sign-out", &[("csrf", &csrf)]).await;

    // Assert
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(headers[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    browser.cookie = copied;
    let (status, _, headers) = browser.get("/console/numbers").await;
    assert_eq!((status, &headers[LOCATION]), (StatusCode::SEE_OTHER, &"/console/sign-in".parse().unwrap()));
}

#[tokio::test]
async fn a_form_without_the_sessions_csrf_token_or_from_another_origin_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.api_key).await;
    let csrf = browser.csrf("/console/numbers").await;
    let before = app.service.list_instances().await.unwrap().len();

    // Act
    let (no_token, _, _) = browser.post("/console/numbers", &[("kind", "sandbox")]).await;
    let (wrong_token, _, _) = browser.post("/console/numbers", &[("kind", "sandbox"), ("csrf", "00")]).await;
    let cross_site = browser
        .client
        .post(app.url("/console/numbers"))
        .header(COOKIE, browser.cookie.as_deref().unwrap())
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("kind=sandbox&csrf={csrf}"))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(
        (no_token, wrong_token, cross_site.status()),
        (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN, StatusCode::FORBIDDEN)
    );
    assert_eq!(app.service.list_instances().await.unwrap().len(), before, "nothing was created");
}

#[tokio::test]
async fn an_operator_adds_a_sandbox_number_sees_its_token_once_changes_its_settings_and_deletes_it() {
    // Arrange
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.api_key).await;
    let csrf = browser.csrf("/console/numbers").await;

    // Act: a number that is not one, then a good one.
    let (status, html, _) =
        browser.post("/console/numbers", &[("csrf", &csrf), ("kind", "sandbox"), ("phone", "12")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("phone:"), "the bad field is named: {html}");
    let form = [("csrf", csrf.as_str()), ("kind", "sandbox"), ("name", "Onboarding <3"), ("phone", "+12015550177")];
    let (status, html, _) = browser.post("/console/numbers", &form).await;

    // Assert: its page, with the token shown once and the name escaped.
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Onboarding &lt;3"), "{html}");
    let token = attribute_after(&html, r#"id="instance-token">"#).map(|t| t.split('<').next().unwrap().to_owned());
    let token = token.expect("the instance token is shown");
    let (record, _) = app
        .service
        .list_instances()
        .await
        .unwrap()
        .into_iter()
        .find(|(r, _)| r.name == "Onboarding <3")
        .expect("the number exists");
    assert!(app.service.instance_by_token(&record.id.to_string(), &token).await.is_ok(), "the token works");
    let page = format!("/console/numbers/{}", record.id);
    let (_, html, _) = browser.get(&page).await;
    assert!(!html.contains(&token), "the token is not shown again");
    assert!(html.contains("+12015550177"));

    // Act: settings, one bad and one good.
    let settings = format!("{page}/settings");
    let bad = [("csrf", csrf.as_str()), ("min_interval_secs", "60"), ("burst", "0"), ("daily_cap", "")];
    let (bad_status, bad_html, _) = browser.post(&settings, &bad).await;
    let good = [
        ("csrf", csrf.as_str()),
        ("min_interval_secs", "120"),
        ("burst", "2"),
        ("daily_cap", "25"),
        ("auto_invite", "on"),
        ("backup_admins", "+12015550199\r\n"),
    ];
    let (good_status, _, headers) = browser.post(&settings, &good).await;

    // Assert
    assert_eq!(bad_status, StatusCode::UNPROCESSABLE_ENTITY, "{bad_html}");
    assert!(bad_html.contains("burst"), "the bad field is named: {bad_html}");
    assert_eq!((good_status, headers[LOCATION].to_str().unwrap()), (StatusCode::SEE_OTHER, page.as_str()));
    let saved = app.service.instance_settings(record.id).await.unwrap();
    let pacing = saved.pacing.expect("own pacing");
    assert_eq!((pacing.min_interval_secs, pacing.burst, pacing.daily_cap), (120, 2, Some(25)));
    assert!(saved.auto_invite);
    assert_eq!(saved.backup_admins.iter().map(|p| p.e164()).collect::<Vec<_>>(), ["+12015550199"]);
    let (_, html, _) = browser.get(&page).await;
    assert!(html.contains("at most 25 a day"), "{html}");

    // Act: delete, after the confirmation page.
    let (status, confirm, _) = browser.get(&format!("{page}/delete")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(confirm.contains("stay on WhatsApp"), "{confirm}");
    let (status, _, headers) = browser.post(&format!("{page}/delete"), &[("csrf", &csrf)]).await;

    // Assert
    assert_eq!((status, headers[LOCATION].to_str().unwrap()), (StatusCode::SEE_OTHER, "/console/numbers"));
    assert!(app.service.instance(record.id).await.is_err(), "deleted");
    let (status, _, _) = browser.get(&page).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_read_only_key_sees_no_forms_that_change_things_and_cannot_post_them() {
    // Arrange
    let app = spawn_app().await;
    let grant = KeyGrant { instance_ids: None, read_only: true };
    let (reader, _) = app.service.create_api_key("dashboard", grant).await.unwrap();
    let mut browser = Browser::new(&app);
    browser.sign_in(&reader).await;

    // Act
    let (_, list, _) = browser.get("/console/numbers").await;
    let page = format!("/console/numbers/{}", app.instance_id);
    let (_, number, _) = browser.get(&page).await;
    let csrf = attribute_after(&list, r#"name="csrf" value=""#).expect("the sign-out form's token");
    let (status, html, _) = browser.post("/console/numbers", &[("csrf", &csrf), ("kind", "sandbox")]).await;

    // Assert
    assert!(list.contains("read-only") && list.contains(&app.instance_phone), "{list}");
    for html in [&list, &number] {
        for form in [r#"action="/console/numbers""#, "/settings", "/delete", "/logout"] {
            assert!(!html.contains(form), "a read-only key is shown {form}: {html}");
        }
    }
    assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
    assert!(html.contains("read-only"), "{html}");
    let (status, _, _) = browser.post(&format!("{page}/delete"), &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(app.service.instance(InstanceId(app.instance_id)).await.is_ok(), "not deleted");
}

#[tokio::test]
async fn a_key_for_some_numbers_sees_only_those_and_not_the_form_to_add_one() {
    // Arrange
    let app = spawn_app().await;
    let (other, _) =
        app.service.create_instance(convene_core::ConnectorKind::Sandbox, Some("Other"), None).await.unwrap();
    let grant = KeyGrant { instance_ids: Some(vec![InstanceId(app.instance_id)]), read_only: false };
    let (scoped, _) = app.service.create_api_key("desk", grant).await.unwrap();
    let mut browser = Browser::new(&app);
    browser.sign_in(&scoped).await;

    // Act
    let (_, list, _) = browser.get("/console/numbers").await;
    let (hidden, _, _) = browser.get(&format!("/console/numbers/{}", other.id)).await;

    // Assert
    assert!(list.contains(&app.instance_phone), "{list}");
    assert!(!list.contains("Other") && !list.contains(&other.id.to_string()), "{list}");
    assert!(!list.contains("Add a number"), "adding a number needs an account-wide key");
    assert_eq!(hidden, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_numbers_stream_pushes_the_rows_when_a_state_changes_and_assets_are_served_to_keep() {
    // Arrange
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.api_key).await;
    let (_, html, _) = browser.get("/console/numbers").await;

    // Act: every script and stylesheet the page names.
    let assets: Vec<String> = html
        .match_indices("/console/assets/")
        .map(|(at, _)| html[at..].split('"').next().unwrap().to_owned())
        .collect();

    // Assert
    assert_eq!(assets.len(), 4, "scripts, stylesheet and icon: {html}");
    for asset in &assets {
        let (status, body, headers) = browser.get(asset).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        assert!(headers["cache-control"].to_str().unwrap().contains("immutable"), "{asset}");
        assert!(body.len() > 200, "{asset}");
    }

    // Act: open the stream, then add a number.
    let mut stream = browser
        .client
        .get(app.url("/console/numbers/live"))
        .header(COOKIE, browser.cookie.as_deref().unwrap())
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    app.service.create_instance(convene_core::ConnectorKind::Sandbox, Some("Arrives live"), None).await.unwrap();

    // Assert: a `numbers` event names the new number.
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("Arrives live") {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk()).await.expect("an event within 10 s");
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("the stream stays open")));
    }
    assert!(seen.contains("event: numbers"), "{seen}");
    assert!(seen.contains("2 numbers</strong>"), "the count by state follows too: {seen}");
}

#[tokio::test]
async fn a_number_that_cannot_reach_its_network_says_why_in_the_list_and_on_its_page() {
    // Arrange
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.api_key).await;

    // Act: the sandbox plays an outage.
    let (status, body) = app.put("/v1/sandbox/faults", serde_json::json!({"unreachable": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, list, _) = browser.get("/console/numbers").await;
    let (_, page, _) = browser.get(&format!("/console/numbers/{}", app.instance_id)).await;

    // Assert
    let state = app.service.instance_state(InstanceId(app.instance_id)).await;
    let convene_core::InstanceState::Unreachable { error, .. } = state else { panic!("not unreachable: {state:?}") };
    let error = maud::html! { (error) }.into_string();
    assert!(list.contains("state-unreachable"), "{list}");
    assert!(list.contains("1 number</strong>"), "{list}");
    assert!(list.contains("1 unreachable"), "the count by state says it at a glance: {list}");
    assert!(list.contains(&format!(r#"<small class="why">{error}"#)), "the list says why, not only on hover: {list}");
    assert!(page.contains("WhatsApp cannot be reached") || page.contains(&error), "the page says why: {page}");
}
