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
    let before = app.service.instances().list().await.unwrap().len();

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
    assert_eq!(app.service.instances().list().await.unwrap().len(), before, "nothing was created");
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
        .instances()
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|(r, _)| r.name == "Onboarding <3")
        .expect("the number exists");
    assert!(app.service.instances().by_token(&record.id.to_string(), &token).await.is_ok(), "the token works");
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
    let saved = app.service.instances().settings(record.id).await.unwrap();
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
    assert!(app.service.instances().get(record.id).await.is_err(), "deleted");
    let (status, _, _) = browser.get(&page).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_read_only_key_sees_no_forms_that_change_things_and_cannot_post_them() {
    // Arrange
    let app = spawn_app().await;
    let grant = KeyGrant { instance_ids: None, read_only: true };
    let (reader, _) = app.service.keys().create("dashboard", grant).await.unwrap();
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
    assert!(app.service.instances().get(InstanceId(app.instance_id)).await.is_ok(), "not deleted");
}

#[tokio::test]
async fn a_key_for_some_numbers_sees_only_those_and_not_the_form_to_add_one() {
    // Arrange
    let app = spawn_app().await;
    let (other, _) = app.service.instances().create(convene_sandbox::KIND, Some("Other"), None).await.unwrap();
    let grant = KeyGrant { instance_ids: Some(vec![InstanceId(app.instance_id)]), read_only: false };
    let (scoped, _) = app.service.keys().create("desk", grant).await.unwrap();
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
    assert_eq!(assets.len(), 5, "three scripts, the stylesheet and the icon: {html}");
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
    app.service.instances().create(convene_sandbox::KIND, Some("Arrives live"), None).await.unwrap();

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
    let state = app.service.instances().state(InstanceId(app.instance_id)).await;
    let convene_core::InstanceState::Unreachable { error, .. } = state else { panic!("not unreachable: {state:?}") };
    let error = maud::html! { (error) }.into_string();
    assert!(list.contains("state-unreachable"), "{list}");
    assert!(list.contains("1 number</strong>"), "{list}");
    assert!(list.contains("1 unreachable"), "the count by state says it at a glance: {list}");
    assert!(list.contains(&format!(r#"<small class="why">{error}"#)), "the list says why, not only on hover: {list}");
    assert!(page.contains("WhatsApp cannot be reached") || page.contains(&error), "the page says why: {page}");
}

/// The rows of the first table after `caption` (a caption's words), as each row's cells' text.
fn table_rows(html: &str, caption: &str) -> Vec<Vec<String>> {
    let Some(start) = html.find(caption) else { return Vec::new() };
    let table = &html[start..html[start..].find("</table>").map_or(html.len(), |end| start + end)];
    let body = table.split("<tbody>").nth(1).unwrap_or("");
    body.split("<tr>")
        .skip(1)
        .map(|row| {
            row.split("<td").skip(1).map(|cell| text_of(cell.split_once('>').map_or("", |(_, rest)| rest))).collect()
        })
        .collect()
}

/// Text with the tags taken out, up to the cell's end.
fn text_of(cell: &str) -> String {
    let cell = cell.split("</td>").next().unwrap_or("");
    let mut text = String::new();
    let mut in_tag = false;
    for c in cell.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn groups_are_found_by_subject_and_number_and_a_scoped_key_finds_only_its_numbers_groups() {
    // Arrange: groups on two numbers.
    let app = spawn_app().await;
    let (other, other_token) =
        app.service.instances().create(convene_sandbox::KIND, Some("Events desk"), None).await.unwrap();
    drop(other_token);
    for subject in ["INCIDENT-1 | War room", "Onboarding ACME", "incident-2 | WAR ROOM"] {
        app.create_group(subject, &["+17137157533"]).await;
    }
    let (status, body) = app
        .post(
            "/v1/groups",
            serde_json::json!({"instance_id": other.id, "subject": "War room on the other desk", "participants": ["+17137157533"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.api_key).await;

    // Act
    let (status, all, _) = browser.get("/console/groups").await;
    let (_, war_rooms, _) = browser.get("/console/groups?q=war+room&number=").await;
    let (_, on_other, _) = browser.get(&format!("/console/groups?q=war&number={}", other.id)).await;
    let (_, none, _) = browser.get("/console/groups?q=nothing+like+this").await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{all}");
    let subjects = |html: &str| -> Vec<String> {
        table_rows(html, "Groups that match")
            .into_iter()
            .chain(table_rows(html, "Every group"))
            .map(|r| r[0].clone())
            .collect()
    };
    assert_eq!(subjects(&all).len(), 4, "{all}");
    assert_eq!(
        subjects(&war_rooms),
        ["INCIDENT-1 | War room", "incident-2 | WAR ROOM", "War room on the other desk"],
        "case is ignored"
    );
    assert_eq!(subjects(&on_other), ["War room on the other desk"]);
    assert!(none.contains("No group matches."), "{none}");
    assert!(on_other.contains(r#"value="war""#), "the search stays in its field");

    // Act: a key for the first number only.
    let grant = KeyGrant { instance_ids: Some(vec![InstanceId(app.instance_id)]), read_only: false };
    let (scoped, _) = app.service.keys().create("desk", grant).await.unwrap();
    let mut desk = Browser::new(&app);
    desk.sign_in(&scoped).await;
    let (_, mine, _) = desk.get("/console/groups?q=war").await;
    let (refused, _, _) = desk.get(&format!("/console/groups?number={}", other.id)).await;

    // Assert
    assert_eq!(subjects(&mine), ["INCIDENT-1 | War room", "incident-2 | WAR ROOM"]);
    assert!(!mine.contains("Events desk"), "the other number is not even a choice: {mine}");
    assert_eq!(refused, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_groups_page_shows_its_members_invite_link_and_what_happened_to_every_participant_at_creation() {
    // Arrange: one person whose privacy keeps them out, one without WhatsApp.
    let app = spawn_app().await;
    app.person("+18647351567", serde_json::json!({"registered": false})).await;
    app.person("+447700176576", serde_json::json!({"group_add": "contacts"})).await;
    let created = app.create_group("Onboarding ACME", &["+17137157533", "+18647351567", "+447700176576"]).await;
    let id = created["group"]["id"].as_str().unwrap();
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.api_key).await;

    // Act
    let (status, html, _) = browser.get(&format!("/console/groups/{id}")).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{html}");
    let members = table_rows(&html, "members, as the network has them now");
    let roles: Vec<(&str, &str)> = members.iter().map(|r| (r[0].as_str(), r[1].as_str())).collect();
    assert_eq!(
        roles,
        [(format!("{} (this number)", app.instance_phone).as_str(), "creator"), ("+17137157533", "member")]
    );
    let outcomes: Vec<(String, String)> =
        table_rows(&html, "when the group was created").into_iter().map(|r| (r[0].clone(), r[1].clone())).collect();
    assert_eq!(
        outcomes,
        [
            ("+17137157533".to_owned(), "added".to_owned()),
            ("+18647351567".to_owned(), "not on whatsapp".to_owned()),
            ("+447700176576".to_owned(), "privacy blocked".to_owned()),
        ]
    );
    assert!(html.contains("Private invite code"), "the refused one's invite code is shown: {html}");
    let (_, link) = app.get(&format!("/v1/groups/{id}/invite-link")).await;
    let link = link["invite_link"].as_str().unwrap();
    assert!(html.contains(&format!(r#"value="{link}""#)), "the invite link, ready to copy: {html}");
    assert!(html.contains(r#"data-copy="invite-link""#));
}

#[tokio::test]
async fn an_operator_changes_members_subject_settings_and_the_invite_link_then_leaves() {
    // Arrange
    let app = spawn_app().await;
    let created = app.create_group("War room", &["+17137157533"]).await;
    let (id, jid) = (created["group"]["id"].as_str().unwrap(), created["group"]["jid"].as_str().unwrap());
    let page = format!("/console/groups/{id}");
    let network = || async { app.get(&format!("/v1/sandbox/groups/{jid}")).await.1 };
    let role_of = |group: &serde_json::Value, phone: &str| {
        group["members"].as_array().unwrap().iter().find(|m| m["phone"] == phone).map(|m| m["role"].clone())
    };
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.api_key).await;
    let csrf = browser.csrf(&page).await;
    let participants = format!("{page}/participants");

    // Act + Assert: add two and something that is not a number.
    let (status, html, _) = browser
        .post(&participants, &[("csrf", &csrf), ("action", "add"), ("participants", "+18647351567\n+595981048477, 12")])
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let outcomes: Vec<String> = table_rows(&html, "Outcome of the change").into_iter().map(|r| r[1].clone()).collect();
    assert_eq!(outcomes, ["added", "added", "invalid number"], "{html}");
    assert_eq!(network().await["members"].as_array().unwrap().len(), 4);

    // Act + Assert: a member's own buttons promote, and remove.
    let (_, html, _) =
        browser.post(&participants, &[("csrf", &csrf), ("action", "promote"), ("participants", "+18647351567")]).await;
    assert!(html.contains("Made admins"), "{html}");
    assert_eq!(role_of(&network().await, "+18647351567"), Some(serde_json::json!("admin")));
    let members = table_rows(&html, "members, as the network has them now");
    let row = members.iter().find(|r| r[0] == "+18647351567").unwrap();
    assert_eq!(row[1], "admin");
    assert!(
        row[2].contains("Dismiss as admin") && row[2].contains("Remove") && !row[2].contains("Make admin"),
        "{row:?}"
    );
    browser.post(&participants, &[("csrf", &csrf), ("action", "remove"), ("participants", "+595981048477")]).await;
    assert_eq!(role_of(&network().await, "+595981048477"), None);

    // Act + Assert: subject, description and settings; only what changed is sent.
    let edit = [
        ("csrf", csrf.as_str()),
        ("subject", "War room | resolved"),
        ("description", "Postmortem on Friday\r\nRunbook 42"),
        ("announce_only", "on"),
        ("disappearing", "604800"),
    ];
    let (status, _, headers) = browser.post(&format!("{page}/edit"), &edit).await;
    assert_eq!((status, headers[LOCATION].to_str().unwrap()), (StatusCode::SEE_OTHER, page.as_str()));
    let group = network().await;
    assert_eq!(group["subject"], "War room | resolved");
    assert_eq!(group["description"], "Postmortem on Friday\nRunbook 42");
    assert_eq!(group["settings"]["announce_only"], true);
    assert_eq!(group["settings"]["disappearing_messages"], "7d");
    let (status, html, _) = browser.post(&format!("{page}/edit"), &[("csrf", &csrf), ("subject", " ")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");

    // Act + Assert: a new invite link.
    let (_, before) = app.get(&format!("/v1/groups/{id}/invite-link")).await;
    let (status, html, _) = browser.post(&format!("{page}/invite-link/reset"), &[("csrf", &csrf)]).await;
    let (_, after) = app.get(&format!("/v1/groups/{id}/invite-link")).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(before["invite_link"], after["invite_link"]);
    assert!(html.contains("no longer works") && html.contains(after["invite_link"].as_str().unwrap()), "{html}");

    // Act + Assert: leave, after the confirmation page.
    let (status, confirm, _) = browser.get(&format!("{page}/leave")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(confirm.contains("Convene keeps the record"), "{confirm}");
    let (status, _, _) = browser.post(&format!("{page}/leave"), &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(role_of(&network().await, &app.instance_phone), None, "left on the network");
    let (_, html, _) = browser.get(&page).await;
    assert!(html.contains("no longer in the group") && !html.contains("/participants"), "{html}");
}

#[tokio::test]
async fn a_read_only_key_sees_a_group_but_no_form_to_change_it_and_cannot_post_one() {
    // Arrange
    let app = spawn_app().await;
    let created = app.create_group("War room", &["+17137157533"]).await;
    let page = format!("/console/groups/{}", created["group"]["id"].as_str().unwrap());
    let grant = KeyGrant { instance_ids: None, read_only: true };
    let (reader, _) = app.service.keys().create("dashboard", grant).await.unwrap();
    let mut browser = Browser::new(&app);
    browser.sign_in(&reader).await;

    // Act
    let (status, html, _) = browser.get(&page).await;
    let csrf = attribute_after(&html, r#"name="csrf" value=""#).expect("the sign-out form's token");
    let (refused, _, _) = browser
        .post(
            &format!("{page}/participants"),
            &[("csrf", &csrf), ("action", "remove"), ("participants", "+17137157533")],
        )
        .await;

    // Assert
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("+17137157533") && html.contains("https://chat.whatsapp.com/"), "{html}");
    for form in ["/participants", "/edit", "/invite-link/reset", "/leave"] {
        assert!(!html.contains(form), "a read-only key is shown {form}: {html}");
    }
    assert_eq!(refused, StatusCode::FORBIDDEN);
    let (_, network) = app.get(&format!("/v1/sandbox/groups/{}", created["group"]["jid"].as_str().unwrap())).await;
    assert_eq!(network["members"].as_array().unwrap().len(), 2, "nobody was removed");
}

/// The batch page a queue form's answer leads to.
fn batch_page_of(headers: &reqwest::header::HeaderMap) -> String {
    let location = headers[LOCATION].to_str().unwrap();
    assert!(location.starts_with("/console/campaigns/"), "{location}");
    location.to_owned()
}

#[tokio::test]
async fn an_operator_previews_a_csv_batch_with_when_pacing_lets_the_last_go_queues_it_and_sees_every_outcome() {
    // Arrange: a number paced to one creation every five minutes, and a person without WhatsApp.
    let app = spawn_app().await;
    let pacing = convene_core::PacingPolicy { min_interval_secs: 300, burst: 1, daily_cap: None };
    app.service.instances().set_settings(InstanceId(app.instance_id), Some(pacing), false, &[]).await.unwrap();
    app.person("+18647351567", serde_json::json!({"registered": false})).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.api_key).await;
    let csrf = browser.csrf("/console/campaigns").await;
    let number = app.instance_id.to_string();
    let csv = "subject,participants,description\n\
               Onboarding ACME,+17137157533;+18647351567,Welcome ACME\n\
               \"Onboarding Globex, Inc.\",+17137157533\n\
               Onboarding Initech,+17137157533\n";
    let form = |intent: &'static str, csv: &'static str| {
        vec![("csrf", csrf.clone()), ("number", number.clone()), ("csv", csv.to_owned()), ("intent", intent.to_owned())]
    };
    let post = |fields: Vec<(&'static str, String)>| {
        let browser = &browser;
        async move {
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            browser.post("/console/campaigns", &pairs).await
        }
    };

    // Act + Assert: a preview queues nothing and says when the third group can go (two intervals from now).
    let (status, html, _) = post(form("preview", csv)).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("3 groups read") && html.contains("in 10 min"), "{html}");
    let read: Vec<String> =
        table_rows(&html, "The groups as read from the CSV").into_iter().map(|r| r[1].clone()).collect();
    assert_eq!(read, ["Onboarding ACME", "Onboarding Globex, Inc.", "Onboarding Initech"]);
    assert!(html.contains("Onboarding Initech,+17137157533\n</textarea>"), "the CSV stays in its box: {html}");
    assert!(app.service.store().list_batches(None, 10).await.unwrap().is_empty(), "nothing queued");

    // Act + Assert: a bad number is named by its line, and nothing is queued.
    let (status, html, _) = post(form("queue", "War room,+17137157533\nBad,not-a-number\n")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(html.contains("line 2 participants"), "{html}");
    assert!(app.service.store().list_batches(None, 10).await.unwrap().is_empty());

    // Act: queue, and let the queue run.
    let (status, _, headers) = post(form("queue", csv)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let batch = batch_page_of(&headers);
    let (status, html, _) = browser.get(&batch).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Batch of 3 groups"), "{html}");
    app.run_jobs_to_completion().await;

    // Assert: every group created, with each participant's outcome a click away.
    let (_, html, _) = browser.get(&batch).await;
    assert!(html.contains("3 succeeded") && html.contains("Finished."), "{html}");
    let rows = table_rows(&html, "Each group of the batch");
    let states: Vec<(&str, &str)> = rows.iter().map(|r| (r[0].as_str(), r[1].as_str())).collect();
    assert_eq!(
        states,
        [
            ("Onboarding ACME", "succeeded"),
            ("Onboarding Globex, Inc.", "succeeded"),
            ("Onboarding Initech", "succeeded")
        ]
    );
    assert_eq!(rows[0][4], "Group · 1 of 2 added");
    let job = attribute_after(&html, r#"<a href="/console/jobs/"#).unwrap();
    let (_, job_page, _) = browser.get(&format!("/console/jobs/{job}")).await;
    let outcomes: Vec<String> =
        table_rows(&job_page, "What happened to each participant").into_iter().map(|r| r[1].clone()).collect();
    assert_eq!(outcomes, ["added", "not on whatsapp"], "{job_page}");
    assert_eq!(table_rows(&job_page, "Every attempt on the network")[0][2], "created");
    let (_, list, _) = browser.get("/console/campaigns").await;
    assert!(table_rows(&list, "Batches of queued groups")[0][2].contains("3 of 3"), "{list}");
}

#[tokio::test]
async fn queued_groups_can_be_cancelled_and_a_key_for_other_numbers_cannot_see_the_batch() {
    // Arrange: a number allowed one creation a day, and a batch of three on it.
    let app = spawn_app().await;
    let pacing = convene_core::PacingPolicy { min_interval_secs: 0, burst: 1, daily_cap: Some(1) };
    app.service.instances().set_settings(InstanceId(app.instance_id), Some(pacing), false, &[]).await.unwrap();
    app.create_group("Today's one", &["+17137157533"]).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.api_key).await;
    let csrf = browser.csrf("/console/campaigns").await;
    let number = app.instance_id.to_string();
    let fields = [
        ("csrf", csrf.as_str()),
        ("number", number.as_str()),
        ("csv", "A,+17137157533\nB,+17137157533\nC,+17137157533"),
        ("intent", "queue"),
    ];
    let (_, _, headers) = browser.post("/console/campaigns", &fields).await;
    let batch = batch_page_of(&headers);

    // Act
    let (_, before, _) = browser.get(&batch).await;
    let (status, _, _) = browser.post(&format!("{batch}/cancel"), &[("csrf", &csrf)]).await;
    let (_, after, _) = browser.get(&batch).await;

    // Assert
    assert!(before.contains("3 queued") && before.contains("in 3 d"), "one a day, after today's: {before}");
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(after.contains("3 cancelled") && !after.contains("Cancel the groups"), "{after}");

    // Act + Assert: a key for another number is told there is no such batch.
    let (other, _) = app.service.instances().create(convene_sandbox::KIND, Some("Other"), None).await.unwrap();
    let grant = KeyGrant { instance_ids: Some(vec![other.id]), read_only: false };
    let (scoped, _) = app.service.keys().create("other desk", grant).await.unwrap();
    let mut outsider = Browser::new(&app);
    outsider.sign_in(&scoped).await;
    let (status, _, _) = outsider.get(&batch).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list, _) = outsider.get("/console/campaigns").await;
    assert!(list.contains("No batches yet."), "{list}");
}

#[tokio::test]
async fn a_scripted_person_accepts_the_private_invite_they_were_sent_opens_a_link_and_leaves() {
    // Arrange
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.api_key).await;
    let csrf = browser.csrf("/console/sandbox").await;
    let person = "/console/sandbox/people/+447700176576";

    // Act + Assert: only contacts may add this person now.
    let (status, _, headers) = browser.get("/console/sandbox/people?phone=%2B44+7700+176576").await;
    assert_eq!((status, headers[LOCATION].to_str().unwrap()), (StatusCode::SEE_OTHER, person));
    let script =
        [("csrf", csrf.as_str()), ("registered", "on"), ("group_add", "contacts"), ("contacts", "+17137157533")];
    let (status, html, _) = browser.post(person, &script).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Saved.") && html.contains("Only their contacts may add them"), "{html}");
    let scripted =
        app.service.sandbox().person(&convene_core::PhoneNumber::parse("+447700176576").unwrap()).await.unwrap();
    assert_eq!(scripted.contacts.iter().map(|p| p.e164()).collect::<Vec<_>>(), ["+17137157533"]);

    // Act + Assert: a creation keeps them out and sends a private invite, which they accept from their inbox.
    let body = serde_json::json!({"instance_id": app.instance_id, "subject": "Launch", "participants": ["+447700176576"], "auto_invite": true});
    let (_, created) = app.post("/v1/groups", body).await;
    assert_eq!(created["participants"][0]["outcome"], "invite_sent", "{created}");
    let jid = created["group"]["jid"].as_str().unwrap().to_owned();
    let (_, html, _) = browser.get(person).await;
    assert!(table_rows(&html, "What the numbers sent this person")[0][2].starts_with("Invite to Launch"), "{html}");
    let (status, html, _) = browser.post(&format!("{person}/accept-invite"), &[("csrf", &csrf), ("group", &jid)]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Joined the group."), "{html}");
    let (status, html, _) = browser.post(&format!("{person}/accept-invite"), &[("csrf", &csrf), ("group", &jid)]).await;
    assert_eq!(status, StatusCode::CONFLICT, "accepting twice is refused in words: {html}");

    // Act + Assert: the group as the network holds it, and a member leaving from there.
    let group_page = format!("/console/sandbox/groups/{jid}");
    let (_, html, _) = browser.get(&group_page).await;
    let members: Vec<String> = table_rows(&html, "members on the network").into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(members, [app.instance_phone.clone(), "+447700176576".to_owned()]);
    let (status, _, _) =
        browser.post(&format!("{group_page}/leave"), &[("csrf", &csrf), ("phone", "+447700176576")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        app.service.sandbox().group(&convene_core::GroupJid::parse(&jid).unwrap()).await.unwrap().members.len(),
        1
    );

    // Act + Assert: someone else opens the invite link.
    let (_, link) = app.get(&format!("/v1/groups/{jid}/invite-link")).await;
    let (status, html, _) = browser
        .post(
            "/console/sandbox/people/+18647351567/join",
            &[("csrf", &csrf), ("invite", link["invite_link"].as_str().unwrap())],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Joined the group."), "{html}");
}

#[tokio::test]
async fn faults_and_network_limits_are_switched_from_the_sandbox_page_and_a_bad_value_is_named() {
    // Arrange
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.api_key).await;
    let csrf = browser.csrf("/console/sandbox").await;

    // Act
    let bad = [("csrf", csrf.as_str()), ("latency_ms", "5"), ("reply_lost_rate", "0"), ("error_rate", "2")];
    let (refused, html, _) = browser.post("/console/sandbox/faults", &bad).await;
    let good = [("csrf", csrf.as_str()), ("latency_ms", "5"), ("reply_lost_rate", "0.25"), ("error_rate", "0")];
    let (saved, _, _) = browser.post("/console/sandbox/faults", &good).await;
    let limits = [
        ("csrf", csrf.as_str()),
        ("enabled", "on"),
        ("min_interval_secs", "60"),
        ("max_per_day", "20"),
        ("ban_after_hits", "2"),
        ("ban_secs", "3600"),
    ];
    let (limited, _, _) = browser.post("/console/sandbox/network-limits", &limits).await;
    let (_, page, _) = browser.get("/console/sandbox").await;

    // Assert
    assert_eq!(refused, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("error_rate must be between 0 and 1"), "{html}");
    assert_eq!((saved, limited), (StatusCode::SEE_OTHER, StatusCode::SEE_OTHER));
    let faults = app.service.sandbox().faults();
    assert_eq!((faults.latency_ms, faults.reply_lost_rate, faults.unreachable), (5, 0.25, false));
    let network = app.service.sandbox().network_limits();
    assert!(network.enabled && network.min_interval_secs == 60 && network.ban_secs == 3600, "{network:?}");
    assert!(page.contains(r#"name="reply_lost_rate" min="0" max="1" step="any" value="0.25""#), "the page shows them");
}

#[tokio::test]
async fn the_sandbox_is_for_account_wide_keys_and_a_read_only_one_only_reads_it() {
    // Arrange
    let app = spawn_app().await;
    let scoped_grant = KeyGrant { instance_ids: Some(vec![InstanceId(app.instance_id)]), read_only: false };
    let (scoped, _) = app.service.keys().create("desk", scoped_grant).await.unwrap();
    let (reader, _) =
        app.service.keys().create("wall", KeyGrant { instance_ids: None, read_only: true }).await.unwrap();
    let mut desk = Browser::new(&app);
    desk.sign_in(&scoped).await;
    let mut wall = Browser::new(&app);
    wall.sign_in(&reader).await;

    // Act
    let (_, numbers, _) = desk.get("/console/numbers").await;
    let (refused, _, _) = desk.get("/console/sandbox").await;
    let (status, page, _) = wall.get("/console/sandbox").await;
    let csrf = attribute_after(&page, r#"name="csrf" value=""#).unwrap();
    let (posted, _, _) = wall.post("/console/sandbox/faults", &[("csrf", &csrf), ("latency_ms", "9")]).await;

    // Assert
    assert!(!numbers.contains("/console/sandbox"), "no Sandbox link for a scoped key");
    assert_eq!(refused, StatusCode::FORBIDDEN);
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("Save faults") && !page.contains("Save limits"), "{page}");
    assert_eq!(posted, StatusCode::FORBIDDEN);
    assert_eq!(app.service.sandbox().faults().latency_ms, 0);
}
