//! The 2Chat dialect end to end: 2Chat's paths, `X-User-API-Key` and `from_number`, its bodies, answers and errors,
//! against the sandbox.

use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, read, spawn_app};

/// The seed's create-group request body (seeds/000), byte for byte as the cURL sample sends it.
const SEED_CREATE_BODY: &str = "{\n\"from_number\": \"+595981048477\",\n\"group\": {\n\"name\": \"My cool WhatsApp group\",\n\"participants\": [\n\"+17137157533\",\n\"+18647351567\"\n]\n}\n}";

/// The seed's add-participant request body (seeds/002), byte for byte as the cURL sample sends it.
const SEED_ADD_BODY: &str =
    "{\n\"from_number\": \"+12123334444\",\n\"participants\": [\n\"+447700176576\",\n\"+17137157533\"\n]\n}";

/// A sandbox instance with this number, made through the native API.
async fn instance_with_number(app: &TestApp, phone: &str) {
    app.new_instance(json!({"phone": phone})).await;
}

/// A 2Chat call with the account key; returns status, JSON body and headers.
async fn call(
    app: &TestApp,
    verb: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value, HeaderMap) {
    let mut request = app.client.request(verb, app.url(path));
    if let Some(key) = key {
        request = request.header("X-User-API-Key", key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let headers = response.headers().clone();
    assert!(
        headers.get(CONTENT_TYPE).is_some_and(|v| v.to_str().unwrap().starts_with("application/json")),
        "every 2Chat answer is JSON: {headers:?}"
    );
    let (status, value) = read(response).await;
    (status, value, headers)
}

async fn post(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    let (status, value, _) = call(app, Method::POST, path, Some(&app.api_key), Some(body)).await;
    (status, value)
}

async fn get(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let (status, value, _) = call(app, Method::GET, path, Some(&app.api_key), None).await;
    (status, value)
}

/// The seed's request body, sent as written with the account key.
async fn send_seed(app: &TestApp, path: &str, body: &'static str) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url(path))
        .header("Content-Type", "application/json")
        .header("X-User-API-Key", &app.api_key)
        .body(body)
        .send()
        .await
        .unwrap();
    read(response).await
}

/// Creates a group through 2Chat and returns the whole `group` object.
async fn create_group(app: &TestApp, from: &str, name: &str, participants: &[&str]) -> Value {
    let (status, body) = post(
        app,
        "/open/whatsapp/group/create",
        json!({"from_number": from, "group": {"name": name, "participants": participants}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["group"].clone()
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

/// A 2Chat error: `{success: false, error, message}`.
fn assert_twochat_error(status: StatusCode, body: &Value, want: StatusCode) {
    assert_eq!(status, want, "{body}");
    assert_eq!(sorted_keys(body), ["error", "message", "success"], "{body}");
    assert_eq!(body["success"], false, "{body}");
}

#[tokio::test]
async fn the_seeds_create_group_request_sent_as_written_creates_the_group_with_exactly_2chats_fields() {
    // Arrange: the seed's from_number is an instance of ours.
    let app = spawn_app().await;
    instance_with_number(&app, "+595981048477").await;

    // Act
    let (status, body) = send_seed(&app, "/open/whatsapp/group/create", SEED_CREATE_BODY).await;

    // Assert: exactly the seed's keys and JSON types.
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(sorted_keys(&body), ["group", "success"]);
    assert_eq!(body["success"], true);
    let group = &body["group"];
    assert_eq!(
        sorted_keys(group),
        ["accepted_numbers", "name", "participants", "unaccepted_numbers", "uuid", "wa_group_id"]
    );
    assert_eq!(group["name"], "My cool WhatsApp group");
    let jid = group["wa_group_id"].as_str().expect("wa_group_id is a string");
    assert!(jid.ends_with("@g.us"), "{jid}");
    let uuid = group["uuid"].as_str().expect("uuid is a string");
    assert!(uuid.starts_with("WAG") && uuid::Uuid::parse_str(&uuid[3..]).is_ok(), "{uuid}");
    assert_eq!(
        group["participants"],
        json!({
            "+595981048477": {"statusCode": 200, "message": "The participant was added successfully",
                              "isGroupCreator": true, "isInviteV4Sent": false},
            "+17137157533": {"statusCode": 200, "message": "The participant was added successfully",
                             "isGroupCreator": false, "isInviteV4Sent": false},
            "+18647351567": {"statusCode": 200, "message": "The participant was added successfully",
                             "isGroupCreator": false, "isInviteV4Sent": false}
        })
    );
    assert_eq!(group["accepted_numbers"], json!(["+17137157533", "+18647351567"]));
    assert_eq!(group["unaccepted_numbers"], json!([]));

    // The group is on the network, and the uuid is Convene's group id.
    let network = network_group(&app, jid).await;
    assert_eq!(member_phones(&network), ["+595981048477", "+17137157533", "+18647351567"]);
    let (status, native) = app.get(&format!("/v1/groups/{}", &uuid[3..])).await;
    assert_eq!((status, &native["jid"]), (StatusCode::OK, &json!(jid)), "{native}");
}

#[tokio::test]
async fn the_seeds_add_participant_request_sent_as_written_adds_them_with_exactly_2chats_fields() {
    // Arrange: the seed's from_number is an instance of ours, with a group of its own.
    let app = spawn_app().await;
    instance_with_number(&app, "+12123334444").await;
    let group = create_group(&app, "+12123334444", "Add to me", &["+18647351567"]).await;
    let uuid = group["uuid"].as_str().unwrap();

    // Act: the seed's body as written, to this group's uuid.
    let (status, body) = send_seed(&app, &format!("/open/whatsapp/group/{uuid}/add-participant"), SEED_ADD_BODY).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({
            "success": true,
            "participants": {
                "+447700176576": {"statusCode": 200, "message": "The participant was added successfully",
                                  "isInviteV4Sent": false},
                "+17137157533": {"statusCode": 200, "message": "The participant was added successfully",
                                 "isInviteV4Sent": false}
            }
        })
    );
    let network = network_group(&app, group["wa_group_id"].as_str().unwrap()).await;
    assert_eq!(member_phones(&network), ["+12123334444", "+18647351567", "+447700176576", "+17137157533"]);
}

#[tokio::test]
async fn a_privacy_refusal_gets_a_private_invite_and_is_in_neither_list() {
    // Arrange: one person refuses adds, one number has no WhatsApp, one is not a number.
    let app = spawn_app().await;
    app.person("+18647351567", json!({"group_add": "nobody"})).await;
    app.person("+447700176576", json!({"registered": false})).await;

    // Act
    let group =
        create_group(&app, &app.instance_phone, "Mixed", &["+17137157533", "+18647351567", "+447700176576", "+1 000"])
            .await;

    // Assert
    let refused = &group["participants"]["+18647351567"];
    assert_eq!((&refused["statusCode"], &refused["isInviteV4Sent"]), (&json!(403), &json!(true)), "{group}");
    assert_eq!(group["participants"]["+447700176576"]["statusCode"], 404, "{group}");
    assert_eq!(group["participants"]["+1 000"]["statusCode"], 400, "{group}");
    assert_eq!(group["accepted_numbers"], json!(["+17137157533"]));
    assert_eq!(group["unaccepted_numbers"], json!(["+447700176576", "+1 000"]));
    let (_, inbox) = app.get("/v1/sandbox/people/+18647351567/inbox").await;
    assert_eq!(inbox.as_array().unwrap().len(), 1, "{inbox}");
    assert_eq!(inbox[0]["kind"]["type"], "group_invite");
    assert_eq!(inbox[0]["kind"]["group"], group["wa_group_id"]);
    let network = network_group(&app, group["wa_group_id"].as_str().unwrap()).await;
    assert!(!member_phones(&network).contains(&"+18647351567".to_owned()));
}

#[tokio::test]
async fn adding_a_privacy_refusal_sends_a_private_invite() {
    let app = spawn_app().await;
    let group = create_group(&app, &app.instance_phone, "Later", &["+17137157533"]).await;
    app.person("+18647351567", json!({"group_add": "nobody"})).await;

    let (status, body) = post(
        &app,
        &format!("/open/whatsapp/group/{}/add-participant", group["uuid"].as_str().unwrap()),
        json!({"from_number": app.instance_phone, "participants": ["+18647351567", "+17137157533"]}),
    )
    .await;

    assert_eq!(status, StatusCode::OK, "{body}");
    let refused = &body["participants"]["+18647351567"];
    assert_eq!((&refused["statusCode"], &refused["isInviteV4Sent"]), (&json!(403), &json!(true)), "{body}");
    assert_eq!(body["participants"]["+17137157533"]["statusCode"], 409, "already in: {body}");
    let (_, inbox) = app.get("/v1/sandbox/people/+18647351567/inbox").await;
    assert_eq!(inbox[0]["kind"]["type"], "group_invite", "{inbox}");
}

#[tokio::test]
async fn removing_participants_answers_accepted_and_unaccepted_numbers() {
    // Arrange
    let app = spawn_app().await;
    let group = create_group(&app, &app.instance_phone, "Leaving", &["+17137157533", "+18647351567"]).await;
    let jid = group["wa_group_id"].as_str().unwrap();

    // Act: by the WhatsApp id, which works as well as the uuid.
    let (status, body) = post(
        &app,
        &format!("/open/whatsapp/group/{jid}/remove-participant"),
        json!({"from_number": app.instance_phone, "participants": ["+17137157533", "+447700176576"]}),
    )
    .await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(sorted_keys(&body), ["participants", "success"]);
    assert_eq!(sorted_keys(&body["participants"]), ["accepted_numbers", "timestamp", "unaccepted_numbers"]);
    assert!(body["participants"]["timestamp"].is_i64(), "{body}");
    assert_eq!(body["participants"]["accepted_numbers"], json!(["+17137157533"]));
    assert_eq!(body["participants"]["unaccepted_numbers"], json!(["+447700176576"]));
    assert_eq!(member_phones(&network_group(&app, jid).await), [app.instance_phone.clone(), "+18647351567".into()]);
}

#[tokio::test]
async fn groups_are_listed_by_number_and_read_by_uuid() {
    // Arrange: two groups on the bootstrap instance, one on another.
    let app = spawn_app().await;
    let first = create_group(&app, &app.instance_phone, "First", &["+17137157533"]).await;
    let second = create_group(&app, &app.instance_phone, "Second", &["+18647351567"]).await;
    instance_with_number(&app, "+12123334444").await;
    create_group(&app, "+12123334444", "Elsewhere", &["+17137157533"]).await;

    // Act
    let (status, list) = get(&app, &format!("/open/whatsapp/groups/{}", app.instance_phone)).await;
    let (get_status, one) = get(&app, &format!("/open/whatsapp/group/{}", first["uuid"].as_str().unwrap())).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["success"], true);
    let names: Vec<&Value> = list["data"].as_array().unwrap().iter().map(|g| &g["wa_group_name"]).collect();
    assert_eq!(names, [&json!("First"), &json!("Second")]);
    assert_eq!(list["data"][1]["uuid"], second["uuid"]);
    assert_eq!(list["data"][1]["wa_group_id"], second["wa_group_id"]);
    assert!(list["data"][0].get("participants").is_none(), "{list}");
    assert_eq!(get_status, StatusCode::OK, "{one}");
    assert_eq!(one["data"]["wa_group_id"], first["wa_group_id"]);
    let participants = &one["data"]["participants"];
    let creator_id = format!("{}@c.us", app.instance_phone.trim_start_matches('+'));
    assert_eq!(participants[0]["wa_participant_id"], creator_id.as_str());
    assert_eq!((&participants[0]["wa_is_admin"], &participants[0]["wa_is_super_admin"]), (&json!(true), &json!(true)));
    assert_eq!(participants[1]["wa_participant_id"], "17137157533@c.us");
    assert_eq!(participants[1]["wa_is_admin"], false);
}

#[tokio::test]
async fn more_than_ten_numbers_in_one_call_is_a_400_and_nothing_is_created() {
    let app = spawn_app().await;
    let eleven: Vec<String> = (0..11).map(|i| format!("+1713715{:04}", 7500 + i)).collect();

    let (status, body) = post(
        &app,
        "/open/whatsapp/group/create",
        json!({"from_number": app.instance_phone, "group": {"name": "Big", "participants": eleven}}),
    )
    .await;

    assert_twochat_error(status, &body, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().starts_with("group.participants:"), "{body}");
    let (_, groups) = app.get("/v1/sandbox/groups").await;
    assert_eq!(groups, json!([]));
}

#[tokio::test]
async fn a_missing_or_wrong_api_key_is_a_401_in_2chats_shape() {
    // Arrange
    let app = spawn_app().await;
    let body = json!({"from_number": app.instance_phone, "group": {"name": "Nope", "participants": ["+17137157533"]}});

    // Act
    let cases = [
        call(&app, Method::POST, "/open/whatsapp/group/create", None, Some(body.clone())).await,
        call(&app, Method::POST, "/open/whatsapp/group/create", Some("cvn_wrong"), Some(body.clone())).await,
        call(&app, Method::GET, &format!("/open/whatsapp/groups/{}", app.instance_phone), Some("x"), None).await,
    ];

    // Assert
    for (status, body, _) in cases {
        assert_twochat_error(status, &body, StatusCode::UNAUTHORIZED);
    }
    let (_, groups) = app.get("/v1/sandbox/groups").await;
    assert_eq!(groups, json!([]));
}

#[tokio::test]
async fn a_from_number_that_is_no_instance_is_a_404_and_bad_fields_are_400s() {
    let app = spawn_app().await;

    let (unknown_status, unknown) = post(
        &app,
        "/open/whatsapp/group/create",
        json!({"from_number": "+12123334444", "group": {"name": "x", "participants": ["+17137157533"]}}),
    )
    .await;
    let (missing_status, missing) = post(
        &app,
        "/open/whatsapp/group/create",
        json!({"from_number": app.instance_phone, "group": {"participants": []}}),
    )
    .await;
    let (long_status, long) = post(
        &app,
        "/open/whatsapp/group/create",
        json!({"from_number": app.instance_phone, "group": {"name": "x".repeat(101), "participants": ["+17137157533"]}}),
    )
    .await;

    assert_twochat_error(unknown_status, &unknown, StatusCode::NOT_FOUND);
    assert_twochat_error(missing_status, &missing, StatusCode::BAD_REQUEST);
    assert_eq!(missing["message"], "group.name: is required");
    assert_twochat_error(long_status, &long, StatusCode::BAD_REQUEST);
    assert!(long["message"].as_str().unwrap().starts_with("group.name:"), "{long}");
}

#[tokio::test]
async fn wrong_methods_and_unknown_endpoints_answer_in_2chats_shape() {
    let app = spawn_app().await;

    let (verb_status, verb) = get(&app, "/open/whatsapp/group/create").await;
    let (other_status, other) = post(&app, "/open/whatsapp/send-message", json!({})).await;

    assert_twochat_error(verb_status, &verb, StatusCode::METHOD_NOT_ALLOWED);
    assert_twochat_error(other_status, &other, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_paced_creation_is_a_429_with_retry_after_in_2chats_shape() {
    // Arrange: one group per 5 minutes, and one just made.
    let app = spawn_app().await;
    let (status, body) = app
        .put(
            &format!("/v1/instances/{}/settings", app.instance_id),
            json!({"pacing": {"min_interval_secs": 300, "burst": 1, "daily_cap": null}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    create_group(&app, &app.instance_phone, "First", &["+17137157533"]).await;

    // Act
    let (status, body, headers) = call(
        &app,
        Method::POST,
        "/open/whatsapp/group/create",
        Some(&app.api_key),
        Some(json!({"from_number": app.instance_phone, "group": {"name": "Second", "participants": ["+17137157533"]}})),
    )
    .await;

    // Assert
    assert_twochat_error(status, &body, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(headers[RETRY_AFTER], "300");
}
