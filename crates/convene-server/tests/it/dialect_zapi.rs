//! The Z-API dialect end to end: Z-API's paths, credentials (instance id and token in the path, `Client-Token`
//! header), bodies, answers and errors, against the sandbox.

use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Credentials, TestApp, read, spawn_app};

/// The create-group body of Z-API's documentation (seeds/003 names the attributes; the docs' sample sends these).
const SEED_CREATE_GROUP_BODY: &str = "{\n  \"autoInvite\": true,\n  \"groupName\": \"Grupo Z-API\",\n  \"phones\": [\"5544999999999\", \"5544999999998\"]\n}";

/// An instance with its Z-API credentials, made through the native API.
struct Zapi<'a> {
    app: &'a TestApp,
    id: String,
    token: String,
    phone: String,
}

impl<'a> Zapi<'a> {
    async fn new(app: &'a TestApp) -> Self {
        let Credentials { id, token, phone } = app.new_instance(json!({})).await;
        Self { app, id, token, phone }
    }

    fn path(&self, method: &str) -> String {
        format!("/instances/{}/token/{}/{method}", self.id, self.token)
    }

    /// A Z-API call with the account key as `Client-Token`; returns status, JSON body and headers.
    async fn call(&self, verb: Method, method: &str, body: Option<Value>) -> (StatusCode, Value, HeaderMap) {
        self.raw(verb, &self.path(method), Some(&self.app.api_key), body).await
    }

    async fn raw(
        &self,
        verb: Method,
        path: &str,
        client_token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value, HeaderMap) {
        let mut request = self.app.client.request(verb, self.app.url(path));
        if let Some(token) = client_token {
            request = request.header("Client-Token", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let headers = response.headers().clone();
        assert!(
            headers.get(CONTENT_TYPE).is_some_and(|v| v.to_str().unwrap().starts_with("application/json")),
            "every Z-API answer is JSON: {headers:?}"
        );
        let (status, value) = read(response).await;
        (status, value, headers)
    }

    async fn post(&self, method: &str, body: Value) -> (StatusCode, Value) {
        let (status, value, _) = self.call(Method::POST, method, Some(body)).await;
        (status, value)
    }

    async fn get(&self, method: &str) -> (StatusCode, Value) {
        let (status, value, _) = self.call(Method::GET, method, None).await;
        (status, value)
    }

    /// Creates a group through create-group and returns its Z-API id (`…-group`).
    async fn create_group(&self, name: &str, phones: &[&str]) -> String {
        let (status, body) = self.post("create-group", json!({"groupName": name, "phones": phones})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["phone"].as_str().expect("phone").to_owned()
    }
}

fn jid_of(zapi_group: &str) -> String {
    format!("{}@g.us", zapi_group.trim_end_matches("-group"))
}

async fn network_group(app: &TestApp, jid: &str) -> Value {
    let (status, group) = app.get(&format!("/v1/sandbox/groups/{jid}")).await;
    assert_eq!(status, StatusCode::OK, "{group}");
    group
}

fn member_phones(network: &Value) -> Vec<String> {
    network["members"].as_array().unwrap().iter().map(|m| m["phone"].as_str().unwrap().to_owned()).collect()
}

fn role_of(network: &Value, phone: &str) -> Option<String> {
    network["members"].as_array().unwrap().iter().find(|m| m["phone"] == phone).map(|m| m["role"].to_string())
}

/// A Z-API error: `{error, message}` with the status in upper-case words.
fn assert_zapi_error(status: StatusCode, body: &Value, want: StatusCode, error: &str) {
    assert_eq!(status, want, "{body}");
    let mut keys: Vec<&str> = body.as_object().expect("an object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["error", "message"], "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert!(body["message"].is_string(), "{body}");
}

#[tokio::test]
async fn the_documented_create_group_request_sent_as_written_creates_the_group_with_exactly_z_apis_fields() {
    // Arrange
    let app = spawn_app().await;
    let zapi = Zapi::new(&app).await;

    // Act: the documented request, only host, instance, token and Client-Token changed.
    let response = app
        .client
        .post(app.url(&zapi.path("create-group")))
        .header("Content-Type", "application/json")
        .header("Client-Token", &app.api_key)
        .body(SEED_CREATE_GROUP_BODY)
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;

    // Assert: exactly Z-API's keys and JSON types.
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut keys: Vec<&str> = body.as_object().expect("an object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["invitationLink", "phone", "phonesNotAdded"]);
    let phone = body["phone"].as_str().expect("phone is a string");
    assert!(phone.ends_with("-group") && phone.len() > 6, "{phone}");
    let link = body["invitationLink"].as_str().expect("invitationLink is a string");
    assert!(link.starts_with("https://chat.whatsapp.com/"), "{link}");
    assert_eq!(body["phonesNotAdded"], json!([]));

    // The group exists on the network with both people, and the link is its link.
    let network = network_group(&app, &jid_of(phone)).await;
    assert_eq!(network["subject"], "Grupo Z-API");
    assert_eq!(member_phones(&network), [format!("+{}", zapi.phone), "+5544999999999".into(), "+5544999999998".into()]);
    assert_eq!(link, format!("https://chat.whatsapp.com/{}", network["invite_code"].as_str().unwrap()));
}

#[tokio::test]
async fn with_auto_invite_a_privacy_refusal_is_not_added_and_gets_a_private_invite() {
    // Arrange: one person lets nobody add them.
    let app = spawn_app().await;
    let zapi = Zapi::new(&app).await;
    app.person("+5544999999998", json!({"group_add": "nobody"})).await;

    // Act
    let (status, body) = zapi
        .post(
            "create-group",
            json!({"autoInvite": true, "groupName": "Invites", "phones": ["5544999999999", "5544999999998"]}),
        )
        .await;

    // Assert: not added, so in phonesNotAdded; a private invite to this group is in their inbox.
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["phonesNotAdded"], json!(["5544999999998"]));
    let jid = jid_of(body["phone"].as_str().unwrap());
    assert!(!member_phones(&network_group(&app, &jid).await).contains(&"+5544999999998".to_owned()));
    let (_, inbox) = app.get("/v1/sandbox/people/+5544999999998/inbox").await;
    let invites: Vec<&Value> =
        inbox.as_array().unwrap().iter().filter(|m| m["kind"]["type"] == "group_invite").collect();
    assert_eq!(invites.len(), 1, "{inbox}");
    assert_eq!(invites[0]["kind"]["group"], jid.as_str());
}

#[tokio::test]
async fn without_auto_invite_a_privacy_refusal_is_not_added_and_gets_no_invite() {
    let app = spawn_app().await;
    let zapi = Zapi::new(&app).await;
    app.person("+5544999999998", json!({"group_add": "nobody"})).await;

    let (status, body) = zapi
        .post(
            "create-group",
            json!({"autoInvite": false, "groupName": "No invites", "phones": ["5544999999999", "5544999999998"]}),
        )
        .await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["phonesNotAdded"], json!(["5544999999998"]));
    let (_, inbox) = app.get("/v1/sandbox/people/+5544999999998/inbox").await;
    assert_eq!(inbox, json!([]));
}

#[tokio::test]
async fn an_entry_that_is_not_a_valid_number_is_reported_not_added_as_sent() {
    let app = spawn_app().await;
    let zapi = Zapi::new(&app).await;

    let (status, body) =
        zapi.post("create-group", json!({"groupName": "Typos", "phones": ["5544999999999", "123"]})).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["phonesNotAdded"], json!(["123"]));
}

#[tokio::test]
async fn participants_and_admins_change_through_z_apis_methods() {
    // Arrange
    let app = spawn_app().await;
    let zapi = Zapi::new(&app).await;
    let group = zapi.create_group("People", &["5544999999999"]).await;
    let jid = jid_of(&group);

    // Act and assert: add (one new, one already in), promote, demote, remove.
    let (status, body) =
        zapi.post("add-participant", json!({"groupId": group, "phones": ["5544999999998", "5544999999999"]})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"value": true})));
    assert!(member_phones(&network_group(&app, &jid).await).contains(&"+5544999999998".to_owned()));

    let (_, body) = zapi.post("add-admin", json!({"groupId": group, "phones": ["5544999999998"]})).await;
    assert_eq!(body, json!({"value": true}));
    assert_eq!(role_of(&network_group(&app, &jid).await, "+5544999999998").as_deref(), Some("\"admin\""));

    let (_, body) = zapi.post("remove-admin", json!({"groupId": group, "phones": ["5544999999998"]})).await;
    assert_eq!(body, json!({"value": true}));
    assert_eq!(role_of(&network_group(&app, &jid).await, "+5544999999998").as_deref(), Some("\"member\""));

    let (_, body) = zapi.post("remove-participant", json!({"groupId": jid, "phones": ["5544999999998"]})).await;
    assert_eq!(body, json!({"value": true}));
    assert_eq!(role_of(&network_group(&app, &jid).await, "+5544999999998"), None);

    // Removing someone who is not there does not hold: value false.
    let (_, body) = zapi.post("remove-participant", json!({"groupId": group, "phones": ["5544999999998"]})).await;
    assert_eq!(body, json!({"value": false}));
}

#[tokio::test]
async fn adding_with_auto_invite_invites_a_privacy_refusal_and_holds() {
    let app = spawn_app().await;
    let zapi = Zapi::new(&app).await;
    let group = zapi.create_group("Later", &["5544999999999"]).await;
    app.person("+5544999999998", json!({"group_add": "nobody"})).await;

    let (_, without) = zapi.post("add-participant", json!({"groupId": group, "phones": ["5544999999998"]})).await;
    let (_, with) =
        zapi.post("add-participant", json!({"autoInvite": true, "groupId": group, "phones": ["5544999999998"]})).await;

    assert_eq!(without, json!({"value": false}));
    assert_eq!(with, json!({"value": true}));
    let (_, inbox) = app.get("/v1/sandbox/people/+5544999999998/inbox").await;
    assert_eq!(inbox.as_array().unwrap().len(), 1, "{inbox}");
}

#[tokio::test]
async fn approve_participant_lets_in_someone_who_asked_to_join() {
    // Arrange: join approval on, someone opens the link.
    let app = spawn_app().await;
    let zapi = Zapi::new(&app).await;
    let group = zapi.create_group("Approval", &["5544999999999"]).await;
    let (status, body) =
        app.patch(&format!("/v1/groups/{}", jid_of(&group)), json!({"settings": {"join_approval": true}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, link, _) = zapi.call(Method::POST, &format!("group-invitation-link/{group}"), None).await;
    let (status, joined) =
        app.post("/v1/sandbox/join", json!({"phone": "+5544999999998", "invite": link["invitationLink"]})).await;
    assert_eq!((status, &joined["result"]), (StatusCode::OK, &json!("pending")), "{joined}");

    // Act
    let (status, body) = zapi.post("approve-participant", json!({"groupId": group, "phones": ["5544999999998"]})).await;

    // Assert
    assert_eq!((status, body), (StatusCode::OK, json!({"value": true})));
    let network = network_group(&app, &jid_of(&group)).await;
    assert!(member_phones(&network).contains(&"+5544999999998".to_owned()));
    assert_eq!(network["pending_join_requests"], json!([]));
}

#[tokio::test]
async fn name_and_description_are_updated() {
    let app = spawn_app().await;
    let zapi = Zapi::new(&app).await;
    let group = zapi.create_group("Before", &["5544999999999"]).await;

    let (_, name) = zapi.post("update-group-name", json!({"groupId": group, "groupName": "After"})).await;
    let (_, description) =
        zapi.post("update-group-description", json!({"groupId": group, "groupDescription": "Rules: be kind"})).await;

    assert_eq!(name, json!({"value": true}));
    assert_eq!(description, json!({"value": true}));
    let network = network_group(&app, &jid_of(&group)).await;
    assert_eq!((&network["subject"], &network["description"]), (&json!("After"), &json!("Rules: be kind")));
}

#[tokio::test]
async fn a_name_too_long_is_a_400_naming_group_name() {
    let app = spawn_app().await;
    let zapi = Zapi::new(&app).await;
    let group = zapi.create_group("Before", &["5544999999999"]).await;

    let (status, body) = zapi.post("update-group-name", json!({"groupId": group, "groupName": "x".repeat(101)})).await;

    assert_zapi_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    assert!(body["message"].as_str().unwrap().starts_with("groupName:"), "{body}");
}

#[tokio::test]
async fn group_metadata_shows_the_group_the_z_api_way() {
    // Arrange
    let app = spawn_app().await;
    let zapi = Zapi::new(&app).await;
    let group = zapi.create_group("Metadata", &["5544999999999"]).await;

    // Act
    let (status, full) = zapi.get(&format!("group-metadata/{group}")).await;
    let (_, light) = zapi.get(&format!("light-group-metadata/{}", jid_of(&group))).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{full}");
    assert_eq!(full["phone"], group.as_str());
    assert_eq!(full["subject"], "Metadata");
    assert_eq!(full["owner"], zapi.phone.as_str());
    assert!(full["creation"].is_i64(), "{full}");
    assert!(full["invitationLink"].as_str().unwrap().starts_with("https://chat.whatsapp.com/"));
    assert_eq!(
        full["participants"],
        json!([
            {"phone": zapi.phone, "isAdmin": true, "isSuperAdmin": true},
            {"phone": "5544999999999", "isAdmin": false, "isSuperAdmin": false}
        ])
    );
    assert_eq!((&full["adminOnlyMessage"], &full["requireAdminApproval"]), (&json!(false), &json!(false)));
    assert!(light.get("invitationLink").is_none(), "{light}");
    assert_eq!(light["participants"], full["participants"]);
}

#[tokio::test]
async fn the_invitation_link_is_read_and_redefined() {
    let app = spawn_app().await;
    let zapi = Zapi::new(&app).await;
    let group = zapi.create_group("Links", &["5544999999999"]).await;

    let (status, first, _) = zapi.call(Method::POST, &format!("group-invitation-link/{group}"), None).await;
    let (_, renewed, _) = zapi.call(Method::POST, &format!("redefine-invitation-link/{group}"), None).await;

    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["phone"], group.as_str());
    let (old, new) = (first["invitationLink"].as_str().unwrap(), renewed["invitationLink"].as_str().unwrap());
    assert_ne!(old, new);
    let network = network_group(&app, &jid_of(&group)).await;
    assert_eq!(new, format!("https://chat.whatsapp.com/{}", network["invite_code"].as_str().unwrap()));
}

#[tokio::test]
async fn wrong_credentials_are_a_401_in_z_apis_shape() {
    // Arrange
    let app = spawn_app().await;
    let zapi = Zapi::new(&app).await;
    let body = Some(json!({"groupName": "Nope", "phones": ["5544999999999"]}));
    let wrong_token = format!("/instances/{}/token/{}/create-group", zapi.id, "0".repeat(50));
    let unknown_instance = format!("/instances/1234567890/token/{}/create-group", zapi.token);

    // Act
    let cases = [
        zapi.raw(Method::POST, &zapi.path("create-group"), None, body.clone()).await,
        zapi.raw(Method::POST, &zapi.path("create-group"), Some("cvn_not_a_key"), body.clone()).await,
        zapi.raw(Method::POST, &wrong_token, Some(&app.api_key), body.clone()).await,
        zapi.raw(Method::POST, &unknown_instance, Some(&app.api_key), body.clone()).await,
        zapi.raw(Method::GET, &format!("{}/1-group", zapi.path("group-metadata")), Some("wrong"), None).await,
    ];

    // Assert: nothing was created.
    for (status, body, _) in cases {
        assert_zapi_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    let (_, groups) = app.get("/v1/sandbox/groups").await;
    assert_eq!(groups, json!([]));
}

#[tokio::test]
async fn a_wrong_http_method_is_a_405_in_z_apis_shape() {
    let app = spawn_app().await;
    let zapi = Zapi::new(&app).await;

    let (status, get_create) = zapi.get("create-group").await;
    let (status_meta, post_meta) = zapi.post("group-metadata/120363019502650977-group", json!({})).await;
    let (status_put, put_add, _) = zapi.call(Method::PUT, "add-participant", Some(json!({}))).await;

    assert_zapi_error(status, &get_create, StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
    assert!(get_create["message"].as_str().unwrap().contains("POST"), "{get_create}");
    assert_zapi_error(status_meta, &post_meta, StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
    assert!(post_meta["message"].as_str().unwrap().contains("GET"), "{post_meta}");
    assert_zapi_error(status_put, &put_add, StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn a_body_without_a_json_content_type_is_a_415_in_z_apis_shape() {
    // Arrange
    let app = spawn_app().await;
    let zapi = Zapi::new(&app).await;
    let body = r#"{"groupName": "Typed", "phones": ["5544999999999"]}"#;
    let send = |content_type: Option<&'static str>| {
        let mut request =
            app.client.post(app.url(&zapi.path("create-group"))).header("Client-Token", &app.api_key).body(body);
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        request.send()
    };

    // Act
    let (missing_status, missing) = read(send(None).await.unwrap()).await;
    let (text_status, text) = read(send(Some("text/plain")).await.unwrap()).await;
    let (json_status, _) = read(send(Some("application/json; charset=utf-8")).await.unwrap()).await;

    // Assert
    assert_zapi_error(missing_status, &missing, StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE");
    assert_zapi_error(text_status, &text, StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE");
    assert_eq!(json_status, StatusCode::OK);
}

#[tokio::test]
async fn bad_bodies_and_unknown_groups_and_methods_answer_in_z_apis_shape() {
    let app = spawn_app().await;
    let zapi = Zapi::new(&app).await;

    let (missing_status, missing) = zapi.post("create-group", json!({"phones": ["5544999999999"]})).await;
    let (typed_status, typed) =
        zapi.post("create-group", json!({"groupName": "x", "phones": [5544999999999_i64]})).await;
    let (own_status, own) = zapi.post("create-group", json!({"groupName": "x", "phones": [zapi.phone]})).await;
    let (group_status, group) = zapi.get("group-metadata/120363000000000000-group").await;
    let (method_status, method) = zapi.post("send-text", json!({"phone": "5544999999999", "message": "hi"})).await;
    let (path_status, path, _) =
        zapi.raw(Method::GET, &format!("/instances/{}/create-group", zapi.id), Some(&app.api_key), None).await;
    let (no_method_status, no_method, _) =
        zapi.raw(Method::GET, &format!("/instances/{}/token/{}", zapi.id, zapi.token), Some(&app.api_key), None).await;

    assert_zapi_error(missing_status, &missing, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    assert_eq!(missing["message"], "groupName: is required");
    assert_zapi_error(typed_status, &typed, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    assert!(typed["message"].as_str().unwrap().starts_with("phones[0]:"), "{typed}");
    assert_zapi_error(own_status, &own, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    assert!(own["message"].as_str().unwrap().starts_with("phones[0]:"), "{own}");
    assert_zapi_error(group_status, &group, StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_zapi_error(method_status, &method, StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_zapi_error(path_status, &path, StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_zapi_error(no_method_status, &no_method, StatusCode::NOT_FOUND, "NOT_FOUND");
}

#[tokio::test]
async fn a_paced_creation_is_a_429_with_retry_after_in_z_apis_shape() {
    // Arrange: this instance may create one group per 5 minutes, and has just created one.
    let app = spawn_app().await;
    let zapi = Zapi::new(&app).await;
    let (status, body) = app
        .put(
            &format!("/v1/instances/{}/settings", zapi.id),
            json!({"pacing": {"min_interval_secs": 300, "burst": 1, "daily_cap": null}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    zapi.create_group("First", &["5544999999999"]).await;

    // Act
    let (status, body, headers) = zapi
        .call(Method::POST, "create-group", Some(json!({"groupName": "Second", "phones": ["5544999999999"]})))
        .await;

    // Assert
    assert_zapi_error(status, &body, StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS");
    assert_eq!(headers[RETRY_AFTER], "300");
}
