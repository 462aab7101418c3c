//! The Wawp dialect end to end: Wawp's paths, `instance_id` and `access_token` (query, header or body), its bodies
//! and query parameters, answers and errors, against the sandbox.

use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Credentials, TestApp, read, spawn_app};

/// The seed's sample URL (seeds/001) after `/v2/groups`, its credentials left as placeholders to replace.
const SEED_QUERY: &str = "access_token=TOKEN&instance_id=INSTANCE&name=New+Project&participants=%5B%7B%22id%22%3A%221234567890%40c.us%22%7D%5D";

/// The seed's JavaScript sample body (seeds/001), as `JSON.stringify` sends it.
const SEED_BODY: &str = r#"{"name":"New Project","participants":[{"id":"1234567890@c.us"}]}"#;

/// An instance with its Wawp credentials, made through the native API.
struct Wawp<'a> {
    app: &'a TestApp,
    id: String,
    token: String,
    phone: String,
}

impl<'a> Wawp<'a> {
    async fn new(app: &'a TestApp) -> Self {
        let Credentials { id, token, phone } = app.new_instance(json!({})).await;
        Self { app, id, token, phone }
    }

    /// `path` with the credentials as query parameters, as Wawp's samples send them.
    fn url(&self, path: &str) -> String {
        let separator = if path.contains('?') { '&' } else { '?' };
        self.app.url(&format!("{path}{separator}instance_id={}&access_token={}", self.id, self.token))
    }

    async fn call(&self, verb: Method, path: &str, body: Option<Value>) -> (StatusCode, Value, HeaderMap) {
        let mut request = self.app.client.request(verb, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(request).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (status, value, _) = self.call(Method::POST, path, Some(body)).await;
        (status, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (status, value, _) = self.call(Method::GET, path, None).await;
        (status, value)
    }

    /// Creates a group and returns its `…@g.us` id.
    async fn create_group(&self, name: &str, ids: &[&str]) -> String {
        let participants: Vec<Value> = ids.iter().map(|id| json!({"id": id})).collect();
        let (status, body) = self.post("/v2/groups", json!({"name": name, "participants": participants})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["id"].as_str().expect("id").to_owned()
    }

    fn c_us(&self) -> String {
        format!("{}@c.us", self.phone)
    }
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value, HeaderMap) {
    let response = request.send().await.expect("request");
    let headers = response.headers().clone();
    assert!(
        headers.get(CONTENT_TYPE).is_some_and(|v| v.to_str().unwrap().starts_with("application/json")),
        "every Wawp answer is JSON: {headers:?}"
    );
    let (status, value) = read(response).await;
    (status, value, headers)
}

async fn network_group(app: &TestApp, jid: &str) -> Value {
    let (status, group) = app.get(&format!("/v1/sandbox/groups/{jid}")).await;
    assert_eq!(status, StatusCode::OK, "{group}");
    group
}

fn member_phones(network: &Value) -> Vec<String> {
    network["members"].as_array().unwrap().iter().map(|m| m["phone"].as_str().unwrap().to_owned()).collect()
}

fn sorted_keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().expect("an object").keys().cloned().collect();
    keys.sort_unstable();
    keys
}

/// A Wawp error: `{statusCode, error, message}`.
fn assert_wawp_error(status: StatusCode, body: &Value, want: StatusCode) {
    assert_eq!(status, want, "{body}");
    assert_eq!(sorted_keys(body), ["error", "message", "statusCode"], "{body}");
    assert_eq!(body["statusCode"], want.as_u16(), "{body}");
}

/// The shape of a created group: WAHA's group keys, each participant with its outcome.
fn assert_created_group_shape(body: &Value) {
    assert_eq!(
        sorted_keys(body),
        [
            "announce",
            "creation",
            "description",
            "id",
            "joinApprovalMode",
            "owner",
            "participants",
            "restrict",
            "subject"
        ]
    );
    assert!(body["id"].as_str().is_some_and(|id| id.ends_with("@g.us")), "{body}");
    assert!(body["creation"].is_i64(), "{body}");
    for p in body["participants"].as_array().expect("participants") {
        assert_eq!(sorted_keys(p), ["id", "isAdmin", "isSuperAdmin", "message", "outcome", "status"], "{p}");
    }
}

#[tokio::test]
async fn the_seeds_sample_url_sent_as_written_creates_the_group() {
    // Arrange
    let app = spawn_app().await;
    let wawp = Wawp::new(&app).await;
    let query = SEED_QUERY.replace("TOKEN", &wawp.token).replace("INSTANCE", &wawp.id);

    // Act: POST to the sample URL, parameters in the query, no body.
    let (status, body, _) = send(app.client.post(app.url(&format!("/v2/groups?{query}")))).await;

    // Assert: the group, WAHA's way; the seed's sample participant is not a valid number (+1 needs ten digits),
    // which the answer says for that participant.
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_created_group_shape(&body);
    assert_eq!(body["subject"], "New Project");
    assert_eq!(body["owner"], wawp.c_us());
    assert_eq!(body["participants"][0]["id"], wawp.c_us());
    assert_eq!(body["participants"][0]["isSuperAdmin"], true);
    let sample = &body["participants"][1];
    assert_eq!(
        (&sample["id"], &sample["outcome"], &sample["status"]),
        (&json!("1234567890@c.us"), &json!("invalid_number"), &json!(400))
    );
    let network = network_group(&app, body["id"].as_str().unwrap()).await;
    assert_eq!(network["subject"], "New Project");
}

#[tokio::test]
async fn the_seeds_javascript_sample_sent_as_written_creates_the_group() {
    // Arrange
    let app = spawn_app().await;
    let wawp = Wawp::new(&app).await;

    // Act: credentials in the query, the body as the sample's JSON.stringify sends it.
    let request = app.client.post(wawp.url("/v2/groups")).header("Content-Type", "application/json").body(SEED_BODY);
    let (status, body, _) = send(request).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_created_group_shape(&body);
    assert_eq!(body["subject"], "New Project");
    network_group(&app, body["id"].as_str().unwrap()).await;
}

#[tokio::test]
async fn created_participants_carry_their_outcomes() {
    // Arrange: one person refuses adds.
    let app = spawn_app().await;
    let wawp = Wawp::new(&app).await;
    app.person("+18647351567", json!({"group_add": "nobody"})).await;

    // Act
    let (status, body) = wawp
        .post(
            "/v2/groups",
            json!({"name": "Outcomes", "participants": [{"id": "17137157533@c.us"}, {"id": "18647351567@c.us"}]}),
        )
        .await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_created_group_shape(&body);
    let participants = body["participants"].as_array().unwrap();
    let ids: Vec<&Value> = participants.iter().map(|p| &p["id"]).collect();
    assert_eq!(ids, [&json!(wawp.c_us()), &json!("17137157533@c.us"), &json!("18647351567@c.us")]);
    assert_eq!((&participants[1]["outcome"], &participants[1]["status"]), (&json!("added"), &json!(200)));
    assert_eq!((&participants[2]["outcome"], &participants[2]["status"]), (&json!("privacy_blocked"), &json!(403)));
    let network = network_group(&app, body["id"].as_str().unwrap()).await;
    assert_eq!(member_phones(&network), [format!("+{}", wawp.phone), "+17137157533".into()]);
}

#[tokio::test]
async fn groups_are_read_and_listed_the_waha_way() {
    // Arrange
    let app = spawn_app().await;
    let wawp = Wawp::new(&app).await;
    let first = wawp.create_group("First", &["17137157533@c.us"]).await;
    let second = wawp.create_group("Second", &["18647351567@c.us"]).await;

    // Act
    let (status, group) = wawp.get(&format!("/v2/groups/{first}")).await;
    let (list_status, list) = wawp.get("/v2/groups").await;
    let (_, page) = wawp.get("/v2/groups?limit=1&offset=1").await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{group}");
    assert_eq!(
        (&group["id"], &group["subject"], &group["owner"]),
        (&json!(first), &json!("First"), &json!(wawp.c_us()))
    );
    assert_eq!(
        group["participants"],
        json!([
            {"id": wawp.c_us(), "isAdmin": true, "isSuperAdmin": true},
            {"id": "17137157533@c.us", "isAdmin": false, "isSuperAdmin": false}
        ])
    );
    assert_eq!(list_status, StatusCode::OK, "{list}");
    let ids: Vec<&Value> = list.as_array().unwrap().iter().map(|g| &g["id"]).collect();
    assert_eq!(ids, [&json!(first), &json!(second)]);
    assert!(list[0].get("participants").is_none(), "{list}");
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["id"], second.as_str());
}

#[tokio::test]
async fn participants_are_added_and_removed_and_admins_promoted_and_demoted() {
    // Arrange
    let app = spawn_app().await;
    let wawp = Wawp::new(&app).await;
    let group = wawp.create_group("People", &["17137157533@c.us"]).await;
    let base = format!("/v2/groups/{group}");
    let person = json!({"participants": [{"id": "18647351567@c.us"}]});

    // Act and assert
    let (status, added) = wawp.post(&format!("{base}/participants/add"), person.clone()).await;
    assert_eq!(status, StatusCode::OK, "{added}");
    assert_eq!(
        added,
        json!([{"id": "18647351567@c.us", "isAdmin": false, "isSuperAdmin": false, "status": 200, "outcome": "added",
                "message": "The participant was added successfully"}])
    );

    let (_, promoted) = wawp.post(&format!("{base}/admin/promote"), person.clone()).await;
    assert_eq!((&promoted[0]["outcome"], &promoted[0]["isAdmin"]), (&json!("promoted"), &json!(true)), "{promoted}");

    let (_, demoted) = wawp.post(&format!("{base}/admin/demote"), person.clone()).await;
    assert_eq!((&demoted[0]["outcome"], &demoted[0]["isAdmin"]), (&json!("demoted"), &json!(false)), "{demoted}");

    let (_, removed) = wawp.post(&format!("{base}/participants/remove"), person.clone()).await;
    assert_eq!(removed[0]["outcome"], "removed", "{removed}");
    assert_eq!(member_phones(&network_group(&app, &group).await), [format!("+{}", wawp.phone), "+17137157533".into()]);

    // Removing them again says they are not there; an unknown action is a 404.
    let (_, again) = wawp.post(&format!("{base}/participants/remove"), person.clone()).await;
    assert_eq!((&again[0]["outcome"], &again[0]["status"]), (&json!("not_member"), &json!(404)), "{again}");
    let (status, body) = wawp.post(&format!("{base}/participants/kick"), person).await;
    assert_wawp_error(status, &body, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_samples_literal_id_placeholder_takes_the_group_from_the_query() {
    // Wawp's sample URLs read `/v2/groups/{id}/admin/demote?id=…@g.us&…&participants=[…]`.
    let app = spawn_app().await;
    let wawp = Wawp::new(&app).await;
    let group = wawp.create_group("Placeholders", &["17137157533@c.us"]).await;
    let query =
        format!("id={}&participants=%5B%7B%22id%22%3A%2217137157533%40c.us%22%7D%5D", group.replace('@', "%40"));

    let (status, body, _) = wawp.call(Method::POST, &format!("/v2/groups/%7Bid%7D/admin/promote?{query}"), None).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body[0]["outcome"], "promoted");
}

#[tokio::test]
async fn the_invite_code_is_read_and_revoked() {
    let app = spawn_app().await;
    let wawp = Wawp::new(&app).await;
    let group = wawp.create_group("Links", &["17137157533@c.us"]).await;

    let (status, first) = wawp.get(&format!("/v2/groups/{group}/invite-code")).await;
    let (revoke_status, second) = wawp.post(&format!("/v2/groups/{group}/invite-code/revoke"), json!({})).await;

    assert_eq!((status, revoke_status), (StatusCode::OK, StatusCode::OK), "{first} {second}");
    let (first, second) = (first.as_str().unwrap(), second.as_str().unwrap());
    assert!(first.starts_with("https://chat.whatsapp.com/"), "{first}");
    assert_ne!(first, second);
    let network = network_group(&app, &group).await;
    assert_eq!(second, format!("https://chat.whatsapp.com/{}", network["invite_code"].as_str().unwrap()));
}

#[tokio::test]
async fn credentials_work_from_the_header_and_the_body_too() {
    let app = spawn_app().await;
    let wawp = Wawp::new(&app).await;
    let group = wawp.create_group("Credentials", &["17137157533@c.us"]).await;

    let header = app
        .client
        .get(app.url(&format!("/v2/groups/{group}?instance_id={}", wawp.id)))
        .header("access-token", &wawp.token);
    let (header_status, _, _) = send(header).await;
    let body = app.client.post(app.url("/v2/groups")).json(&json!({
        "instance_id": wawp.id, "access_token": wawp.token, "name": "From the body", "participants": [{"id": "17137157533@c.us"}]
    }));
    let (body_status, created, _) = send(body).await;

    assert_eq!(header_status, StatusCode::OK);
    assert_eq!((body_status, &created["subject"]), (StatusCode::OK, &json!("From the body")), "{created}");
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_a_401_in_wawps_shape() {
    // Arrange
    let app = spawn_app().await;
    let wawp = Wawp::new(&app).await;
    let body = json!({"name": "Nope", "participants": [{"id": "17137157533@c.us"}]});

    // Act
    let cases = [
        send(app.client.post(app.url(&format!("/v2/groups?instance_id={}", wawp.id))).json(&body)).await,
        send(app.client.post(app.url(&format!("/v2/groups?instance_id={}&access_token=wrong", wawp.id))).json(&body))
            .await,
        send(app.client.post(app.url(&format!("/v2/groups?access_token={}", wawp.token))).json(&body)).await,
        send(app.client.get(app.url(&format!("/v2/groups?instance_id=1234567890&access_token={}", wawp.token)))).await,
    ];

    // Assert
    for (status, body, _) in cases {
        assert_wawp_error(status, &body, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "Unauthorized");
    }
    let (_, groups) = app.get("/v1/sandbox/groups").await;
    assert_eq!(groups, json!([]));
}

#[tokio::test]
async fn bad_parameters_wrong_methods_and_unknown_paths_answer_in_wawps_shape() {
    let app = spawn_app().await;
    let wawp = Wawp::new(&app).await;

    let (missing_status, missing) =
        wawp.post("/v2/groups", json!({"participants": [{"id": "17137157533@c.us"}]})).await;
    let (long_status, long) =
        wawp.post("/v2/groups", json!({"name": "x".repeat(101), "participants": [{"id": "17137157533@c.us"}]})).await;
    let (json_status, not_json, _) = send(app.client.post(wawp.url("/v2/groups")).body("{oops")).await;
    let (group_status, group) = wawp.get("/v2/groups/120363000000000000@g.us").await;
    let (verb_status, verb, _) = wawp.call(Method::DELETE, "/v2/groups", None).await;
    let (path_status, path) = wawp.get("/v2/chats").await;

    assert_wawp_error(missing_status, &missing, StatusCode::BAD_REQUEST);
    assert_eq!(missing["message"], "name: is required");
    assert_wawp_error(long_status, &long, StatusCode::BAD_REQUEST);
    assert!(long["message"].as_str().unwrap().starts_with("name:"), "{long}");
    assert_wawp_error(json_status, &not_json, StatusCode::BAD_REQUEST);
    assert_wawp_error(group_status, &group, StatusCode::NOT_FOUND);
    assert_wawp_error(verb_status, &verb, StatusCode::METHOD_NOT_ALLOWED);
    assert_wawp_error(path_status, &path, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_paced_creation_is_a_429_with_retry_after_in_wawps_shape() {
    // Arrange: one group per 5 minutes, and one just made.
    let app = spawn_app().await;
    let wawp = Wawp::new(&app).await;
    let (status, body) = app
        .put(
            &format!("/v1/instances/{}/settings", wawp.id),
            json!({"pacing": {"min_interval_secs": 300, "burst": 1, "daily_cap": null}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wawp.create_group("First", &["17137157533@c.us"]).await;

    // Act
    let (status, body, headers) = wawp
        .call(Method::POST, "/v2/groups", Some(json!({"name": "Second", "participants": [{"id": "17137157533@c.us"}]})))
        .await;

    // Assert
    assert_wawp_error(status, &body, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers[RETRY_AFTER], "300");
}
