//! The console's webhooks pages and event monitor over real HTTP: endpoints added, edited, disabled, rotated and
//! deleted by form; a failing receiver's deliveries with every attempt, replayed one or all, followed live; what
//! read-only and scoped keys get; the event log filtered by type and number, and its live stream.

use std::time::Duration;

use convene_core::InstanceId;
use convene_server::auth::KeyGrant;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION};
use serde_json::{Value, json};

use crate::console::{Browser, attribute_after};
use crate::e2e_webhooks::deliver_everything;
use crate::helpers::{TestApp, spawn_app};
use crate::receiver::{Answer, Receiver};

/// The secret a page shows once, if it shows one.
fn shown_secret(html: &str) -> Option<String> {
    attribute_after(html, r#"id="webhook-secret">"#).map(|s| s.split('<').next().unwrap().to_owned())
}

/// Reads an open event stream until its text holds `wanted`; everything read by then.
async fn read_until(stream: &mut reqwest::Response, wanted: &str) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(wanted) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk()).await;
        let chunk = chunk.unwrap_or_else(|_| panic!("no {wanted} within 10 s; read: {seen}"));
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("the stream stays open")));
    }
    seen
}

async fn open_stream(app: &TestApp, browser: &Browser<'_>, path: &str) -> reqwest::Response {
    let stream = browser
        .client
        .get(app.url(path))
        .header(COOKIE, browser.cookie.as_deref().unwrap())
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK, "{path}");
    stream
}

/// An endpoint added through the API for `url`, taking `group.created` only; its id.
async fn endpoint_for(app: &TestApp, url: &str) -> String {
    let (status, created) = app.post("/v1/webhooks", json!({"url": url, "event_types": ["group.created"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_operator_adds_an_endpoint_sees_its_secret_once_edits_disables_rotates_and_deletes_it() {
    // Arrange
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.api_key).await;
    let csrf = browser.csrf("/console/webhooks").await;

    // Act: a URL that is none, then a good endpoint for two kinds of events.
    let (bad, bad_html, _) =
        browser.post("/console/webhooks", &[("csrf", &csrf), ("url", "ftp://nowhere"), ("enabled", "on")]).await;
    let url = receiver.url();
    let form = [
        ("csrf", csrf.as_str()),
        ("url", url.as_str()),
        ("description", "Billing <team>"),
        ("event_types", "group.created"),
        ("event_types", "instance.*"),
        ("enabled", "on"),
    ];
    let (status, html, _) = browser.post("/console/webhooks", &form).await;

    // Assert: refused naming the field (what was typed kept); then added, its secret shown once.
    assert_eq!(bad, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad_html.contains("url:") && bad_html.contains(r#"value="ftp://nowhere""#), "{bad_html}");
    assert_eq!(status, StatusCode::OK, "{html}");
    let endpoints = app.state.endpoints.list().await.unwrap();
    assert_eq!(endpoints.len(), 1, "only the good one was added");
    let endpoint = &endpoints[0];
    assert_eq!(endpoint.filter.entries(), ["group.created", "instance.*"]);
    assert!(endpoint.enabled);
    let secret = shown_secret(&html).expect("the secret is shown");
    assert_eq!(secret, app.state.endpoints.secret(endpoint.id).await.unwrap().to_whsec());
    assert!(html.contains("Billing &lt;team&gt;"), "{html}");
    let page = format!("/console/webhooks/{}", endpoint.id);
    let (_, html, _) = browser.get(&page).await;
    assert!(!html.contains(&secret), "the secret is not shown again");
    let (_, list, _) = browser.get("/console/webhooks").await;
    assert!(list.contains(&url) && list.contains("<code>instance.*</code>"), "{list}");
    assert!(list.contains(r#"href="/console/webhooks" aria-current="page""#), "{list}");

    // Act: edit it to every group event, disabled (the box unchecked is not sent).
    let edit = [("csrf", csrf.as_str()), ("url", url.as_str()), ("event_types", "group.*")];
    let (status, _, headers) = browser.post(&format!("{page}/edit"), &edit).await;

    // Assert
    assert_eq!((status, headers[LOCATION].to_str().unwrap()), (StatusCode::SEE_OTHER, page.as_str()));
    let edited = app.state.endpoints.get(endpoint.id).await.unwrap();
    assert_eq!(edited.filter.entries(), ["group.*"]);
    assert!(!edited.enabled);
    assert_eq!(edited.description, "", "an emptied description is emptied");
    let (_, html, _) = browser.get(&page).await;
    assert!(html.contains(">disabled<") && html.contains("disabled by its owner"), "{html}");

    // Act: rotate, after the confirmation page, with no overlap.
    let (status, confirm, _) = browser.get(&format!("{page}/rotate")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(confirm.contains(r#"name="previous_valid_for_secs""#), "{confirm}");
    let (status, html, _) =
        browser.post(&format!("{page}/rotate"), &[("csrf", &csrf), ("previous_valid_for_secs", "0")]).await;

    // Assert: a new secret, shown once, the old one no longer signing.
    assert_eq!(status, StatusCode::OK, "{html}");
    let rotated = shown_secret(&html).expect("the new secret is shown");
    assert_ne!(rotated, secret);
    assert_eq!(rotated, app.state.endpoints.secret(endpoint.id).await.unwrap().to_whsec());
    assert!(app.state.endpoints.get(endpoint.id).await.unwrap().previous_secret.is_none());

    // Act: delete, after the confirmation page.
    let (status, confirm, _) = browser.get(&format!("{page}/delete")).await;
    assert!(status == StatusCode::OK && confirm.contains("events stay in the log"), "{confirm}");
    let (status, _, headers) = browser.post(&format!("{page}/delete"), &[("csrf", &csrf)]).await;

    // Assert
    assert_eq!((status, headers[LOCATION].to_str().unwrap()), (StatusCode::SEE_OTHER, "/console/webhooks"));
    assert!(app.state.endpoints.list().await.unwrap().is_empty());
    assert_eq!(browser.get(&page).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_failed_delivery_shows_every_attempt_and_replays_one_or_all_follow_live_to_success() {
    // Arrange: a receiver that answers 500 through the whole retry schedule, for two groups' events.
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    receiver.answer(Answer::Status { status: 500, retry_after: None });
    let endpoint = endpoint_for(&app, &receiver.url()).await;
    app.create_group("Replayed A", &["+17137157533"]).await;
    app.create_group("Replayed B", &["+17137157533"]).await;
    let dispatcher = app.dispatcher(|c| c.disable_after_secs = 30 * 86_400);
    deliver_everything(&app, &dispatcher).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.api_key).await;
    let page = format!("/console/webhooks/{endpoint}");

    // Act
    let (status, html, _) = browser.get(&page).await;
    let (_, failed_only, _) = browser.get(&format!("{page}?state=failed")).await;
    let (_, succeeded_only, _) = browser.get(&format!("{page}?state=succeeded")).await;

    // Assert: both failed, listed with their attempts and last error; the state filter narrows the list.
    assert_eq!(status, StatusCode::OK, "{html}");
    let schedule = app.config.webhooks.retry_schedule_secs.len();
    let deliveries = app.all_pages(&format!("/v1/webhooks/{endpoint}/deliveries")).await;
    let ids: Vec<i64> = deliveries.iter().map(|d| d["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        assert!(html.contains(&format!(r#"/deliveries/{id}">#{id}</a>"#)), "{html}");
    }
    assert_eq!(html.matches(r#"state-unreachable">failed<"#).count(), 2, "{html}");
    assert!(html.contains(&format!(r#"data-label="Attempts">{}<"#, schedule + 1)), "{html}");
    assert!(html.contains("HTTP 500"), "{html}");
    assert_eq!(failed_only.matches(r#"state-unreachable">failed<"#).count(), 2);
    assert!(succeeded_only.contains("No deliveries here."), "{succeeded_only}");

    // Act: a delivery's page.
    let (older, newer) = (ids[1], ids[0]);
    let delivery_page = format!("{page}/deliveries/{older}");
    let (status, html, _) = browser.get(&delivery_page).await;

    // Assert: every attempt, with its answer and the start of its body.
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains(&format!("Attempts ({})", schedule + 1)), "{html}");
    assert_eq!(html.matches(r#"state-unreachable">HTTP 500<"#).count(), schedule + 1, "{html}");
    assert!(html.contains("not now"), "the answer's body: {html}");
    assert!(html.contains("Replay this delivery"), "{html}");

    // Act: replay that one, then all failed (the other one).
    let csrf = browser.csrf(&page).await;
    let (status, _, headers) = browser.post(&format!("{delivery_page}/replay"), &[("csrf", &csrf)]).await;
    assert_eq!((status, headers[LOCATION].to_str().unwrap()), (StatusCode::SEE_OTHER, delivery_page.as_str()));
    let (_, after_one, _) = browser.get(&delivery_page).await;
    let (status, _, headers) = browser.post(&format!("{page}/replay"), &[("csrf", &csrf)]).await;
    let location = headers[LOCATION].to_str().unwrap().to_owned();
    let (_, after_all, _) = browser.get(&location).await;

    // Assert: each pending again; the page says how many the second replay queued.
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(after_one.contains(r#"state-pairing">pending<"#) && !after_one.contains("Replay this delivery"));
    assert!(after_all.contains("1 failed delivery is queued again."), "{after_all}");
    let states = |d: &[Value]| d.iter().map(|d| d["state"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let now = app.all_pages(&format!("/v1/webhooks/{endpoint}/deliveries")).await;
    assert_eq!(states(&now), ["pending", "pending"]);
    assert_ne!(older, newer);

    // Act: watch the table while the receiver recovers and both are delivered.
    let mut stream = open_stream(&app, &browser, &format!("{page}/live")).await;
    read_until(&mut stream, "event: deliveries").await;
    receiver.answer(Answer::Ok);
    deliver_everything(&app, &dispatcher).await;

    // Assert: the stream pushes the table with both succeeded.
    let seen = read_until(&mut stream, r#"state-connected">succeeded</span></td><td data-label="Attempts">"#).await;
    let last = seen.rsplit("event: deliveries").next().unwrap();
    assert_eq!(last.matches(r#"state-connected">succeeded<"#).count(), 2, "{last}");
}

#[tokio::test]
async fn a_read_only_key_sees_endpoints_without_forms_and_a_key_for_some_numbers_not_at_all() {
    // Arrange: a failed delivery to look at.
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    receiver.answer(Answer::Status { status: 500, retry_after: None });
    let endpoint = endpoint_for(&app, &receiver.url()).await;
    app.create_group("Looked at", &["+17137157533"]).await;
    deliver_everything(&app, &app.dispatcher(|_| {})).await;
    let delivery = app.all_pages(&format!("/v1/webhooks/{endpoint}/deliveries")).await[0]["id"].as_i64().unwrap();
    let (reader, _) =
        app.service.keys().create("wallboard", KeyGrant { instance_ids: None, read_only: true }).await.unwrap();
    let scope = KeyGrant { instance_ids: Some(vec![InstanceId(app.instance_id)]), read_only: false };
    let (scoped, _) = app.service.keys().create("desk", scope).await.unwrap();
    let page = format!("/console/webhooks/{endpoint}");
    let delivery_page = format!("{page}/deliveries/{delivery}");

    // Act: the read-only key reads every page, then posts the forms it was not shown.
    let mut reading = Browser::new(&app);
    reading.sign_in(&reader).await;
    let mut pages = Vec::new();
    for path in ["/console/webhooks", page.as_str(), delivery_page.as_str()] {
        let (status, html, _) = reading.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
        pages.push(html);
    }
    let csrf = attribute_after(&pages[0], r#"name="csrf" value=""#).expect("the sign-out form's token");
    let mut refused = Vec::new();
    for path in [
        "/console/webhooks".to_owned(),
        format!("{page}/edit"),
        format!("{page}/replay"),
        format!("{page}/rotate"),
        format!("{page}/delete"),
        format!("{delivery_page}/replay"),
    ] {
        let form = [("csrf", csrf.as_str()), ("url", "http://127.0.0.1:9/x"), ("enabled", "on")];
        refused.push((path.clone(), reading.post(&path, &form).await.0));
    }

    // Assert
    assert!(pages[1].contains("HTTP 500") || pages[1].contains(">failed<"), "deliveries are shown: {}", pages[1]);
    for html in &pages {
        for form in ["Add endpoint", "/edit\"", "/replay\"", "/rotate\"", "/delete\"", "Replay"] {
            assert!(!html.contains(form), "a read-only key is shown {form}: {html}");
        }
    }
    for (path, status) in refused {
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(app.state.endpoints.list().await.unwrap().len(), 1, "nothing added or deleted");
    assert_eq!(app.all_pages(&format!("/v1/webhooks/{endpoint}/deliveries?state=failed")).await.len(), 1);

    // Act: a key for some numbers.
    let mut desk = Browser::new(&app);
    desk.sign_in(&scoped).await;
    let (_, numbers, _) = desk.get("/console/numbers").await;
    let (list, _, _) = desk.get("/console/webhooks").await;
    let (one, _, _) = desk.get(&page).await;

    // Assert: as the API answers it, 403; and no link to it.
    assert!(!numbers.contains(r#"href="/console/webhooks""#), "{numbers}");
    assert!(numbers.contains(r#"href="/console/events""#), "the event monitor is offered: {numbers}");
    assert_eq!((list, one), (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN));
}

#[tokio::test]
async fn a_form_without_the_csrf_token_adds_no_endpoint_and_replays_nothing() {
    // Arrange
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    receiver.answer(Answer::Status { status: 500, retry_after: None });
    let endpoint = endpoint_for(&app, &receiver.url()).await;
    app.create_group("Kept failed", &["+17137157533"]).await;
    deliver_everything(&app, &app.dispatcher(|_| {})).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.api_key).await;

    // Act
    let url = receiver.url();
    let (add, _, _) = browser.post("/console/webhooks", &[("url", url.as_str()), ("enabled", "on")]).await;
    let (replay, _, _) = browser.post(&format!("/console/webhooks/{endpoint}/replay"), &[]).await;

    // Assert
    assert_eq!((add, replay), (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN));
    assert_eq!(app.state.endpoints.list().await.unwrap().len(), 1);
    assert_eq!(app.all_pages(&format!("/v1/webhooks/{endpoint}/deliveries?state=failed")).await.len(), 1);
}

/// The event types of the rows a monitor page shows, top to bottom.
fn row_types(html: &str) -> Vec<String> {
    html.split(r#"<code class="event-type">"#).skip(1).map(|rest| rest.split('<').next().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_event_monitor_filters_by_type_and_number_and_a_key_for_some_numbers_sees_only_theirs() {
    // Arrange: a group on the bootstrap number and one on another.
    let app = spawn_app().await;
    let (other, _) = app.service.instances().create(convene_sandbox::KIND, Some("Other desk"), None).await.unwrap();
    app.create_group("Mine", &["+17137157533"]).await;
    let body = json!({"instance_id": other.id.0, "subject": "Theirs", "participants": ["+17137157533"]});
    let (status, created) = app.post("/v1/groups", body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.api_key).await;

    // Act
    let (status, everything, _) = browser.get("/console/events").await;
    let (_, created_only, _) = browser.get("/console/events?type=group.created&number=").await;
    let (_, theirs, _) = browser.get(&format!("/console/events?type=&number={}", other.id)).await;
    let (_, both, _) = browser.get(&format!("/console/events?type=group.created&number={}", other.id)).await;
    let (bad_type, _, _) = browser.get("/console/events?type=group.made").await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{everything}");
    let all = row_types(&everything);
    assert!(all.iter().any(|t| t == "job.state_changed") && all.iter().any(|t| t == "group.created"), "{all:?}");
    assert!(everything.contains(r#"href="/console/events" aria-current="page""#));
    assert!(everything.contains("&quot;subject&quot;: &quot;Theirs&quot;"), "payloads, indented: {everything}");
    assert_eq!(row_types(&created_only), ["group.created", "group.created"]);
    assert!(created_only.contains(r#"<option value="group.created" selected>"#), "{created_only}");
    assert!(!row_types(&theirs).is_empty());
    assert!(!theirs.contains(&format!(r#"href="/console/numbers/{}""#, app.instance_id)), "{theirs}");
    assert_eq!(row_types(&both), ["group.created"]);
    assert!(both.contains("Theirs") && !both.contains("&quot;Mine&quot;"), "{both}");
    assert_eq!(bad_type, StatusCode::UNPROCESSABLE_ENTITY);

    // Act: a key for the bootstrap number only.
    let scope = KeyGrant { instance_ids: Some(vec![InstanceId(app.instance_id)]), read_only: true };
    let (scoped, _) = app.service.keys().create("desk", scope).await.unwrap();
    let mut desk = Browser::new(&app);
    desk.sign_in(&scoped).await;
    let (_, seen, _) = desk.get("/console/events").await;
    let (hidden, _, _) = desk.get(&format!("/console/events?number={}", other.id)).await;

    // Assert
    assert!(seen.contains("&quot;Mine&quot;") && !seen.contains("Theirs"), "{seen}");
    assert!(!seen.contains("Other desk"), "the other number is not a choice: {seen}");
    assert_eq!(hidden, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_event_monitor_stream_sends_new_events_of_its_filter_only() {
    // Arrange: the monitor filtered to group creations, its stream open from where the page was rendered.
    let app = spawn_app().await;
    app.create_group("Before", &["+17137157533"]).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.api_key).await;
    let (_, html, _) = browser.get("/console/events?type=group.created").await;
    let live = attribute_after(&html, r#"sse-connect=""#).expect("the newest page is live").replace("&amp;", "&");
    assert!(live.starts_with("/console/events/live?type=group.created&"), "{live}");
    let mut stream = open_stream(&app, &browser, &live).await;

    // Act
    app.create_group("Arrives live", &["+17137157533"]).await;

    // Assert: one push, with the new group.created only (not the old one, not the job's events).
    let seen = read_until(&mut stream, "Arrives live").await;
    assert!(seen.contains("event: events"), "{seen}");
    assert!(seen.contains("\nid: "), "the newest seq, for a reconnect: {seen}");
    assert_eq!(row_types(&seen), ["group.created"], "{seen}");
    assert!(!seen.contains("Before"), "{seen}");
}
