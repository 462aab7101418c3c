//! API keys an operator can scope, make read-only and revoke, and instance tokens that rotate: every native route
//! (read from the OpenAPI document, so a new route is covered or the test fails) with a scoped, a read-only and a
//! revoked key; the dialects that take the account key (2Chat, Z-API); and instance tokens in Green, Z-API and Wawp.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Credentials, TestApp, read, spawn_app};

/// A number the sandbox adds to groups without fuss.
const MEMBER: &str = "+595981048477";

async fn call_as(app: &TestApp, key: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    read(request.send().await.expect("request")).await
}

/// Creates a key through the API with the admin key; returns its id and secret.
async fn new_key(app: &TestApp, body: Value) -> (String, String) {
    let (status, created) = app.post("/v1/keys", body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (created["id"].as_str().unwrap().to_owned(), created["secret"].as_str().unwrap().to_owned())
}

/// One instance's records that routes name: the instance, a group and a queued job.
struct Owned {
    instance: i64,
    group: String,
    jid: String,
    job: String,
}

/// The bootstrap instance A and a second instance B, each with a group and a queued job; a webhook endpoint.
struct World {
    app: TestApp,
    a: Owned,
    b: Owned,
    b_phone: String,
    webhook: String,
}

async fn owned(app: &TestApp, instance: i64, subject: &str) -> Owned {
    let (status, created) =
        app.post("/v1/groups", json!({"instance_id": instance, "subject": subject, "participants": [MEMBER]})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let batch = json!({"instance_ids": [instance], "groups": [{"subject": format!("{subject} queued"), "participants": [MEMBER]}]});
    let (status, queued) = app.post("/v1/jobs/groups", batch).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    Owned {
        instance,
        group: created["group"]["id"].as_str().unwrap().to_owned(),
        jid: created["group"]["jid"].as_str().unwrap().to_owned(),
        job: queued["jobs"][0]["id"].as_str().unwrap().to_owned(),
    }
}

async fn world() -> World {
    let app = spawn_app().await;
    let Credentials { id, phone, .. } = app.new_instance(json!({})).await;
    let a = owned(&app, app.instance_id, "A's group").await;
    let b = owned(&app, id.parse().unwrap(), "B's group").await;
    let (status, hook) = app.post("/v1/webhooks", json!({"url": "http://127.0.0.1:9/hook"})).await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let webhook = hook["id"].as_str().unwrap().to_owned();
    World { app, a, b, b_phone: phone, webhook }
}

/// What a route of the native API belongs to, as a scoped key meets it.
#[derive(Debug, PartialEq)]
enum Kind {
    /// The whole account's: a scoped key gets 403.
    AccountWide,
    /// A list: a scoped key sees its instances' records only.
    List,
    /// Names an instance (in the path or the body): one outside the scope is 404.
    Instance,
    /// Counts over the instances: a scoped key's count only its own.
    Summary,
}

fn kind(method: &str, template: &str) -> Kind {
    let account_wide = ["/v1/keys", "/v1/webhooks", "/v1/sandbox/"];
    if account_wide.iter().any(|p| template.starts_with(p)) || (method == "post" && template == "/v1/instances") {
        return Kind::AccountWide;
    }
    match (method, template) {
        ("get", "/v1/instances" | "/v1/groups" | "/v1/jobs" | "/v1/events") => Kind::List,
        ("get", "/v1/health") => Kind::Summary,
        (_, t) if t.starts_with("/v1/instances/") || t.starts_with("/v1/groups") || t.starts_with("/v1/jobs") => {
            Kind::Instance
        }
        _ => panic!("{method} {template} is a new kind of route: say how scoped keys meet it"),
    }
}

/// Every `/v1` operation in the OpenAPI document: (method, path template).
fn native_routes() -> Vec<(String, String)> {
    let spec = serde_json::to_value(convene_server::openapi()).unwrap();
    let mut routes = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() && path.starts_with("/v1/") {
                routes.push((method.to_owned(), path.clone()));
            }
        }
    }
    routes
}

impl World {
    /// The route's path with `owned`'s records in it.
    fn path(&self, template: &str, owned: &Owned) -> String {
        let id = if template.starts_with("/v1/instances/") {
            owned.instance.to_string()
        } else if template.starts_with("/v1/jobs/") {
            owned.job.clone()
        } else if template.starts_with("/v1/keys/") {
            uuid::Uuid::new_v4().to_string()
        } else {
            self.webhook.clone()
        };
        template
            .replace("{id}", &id)
            .replace("{group}", &owned.group)
            .replace("{action}", "add")
            .replace("{delivery_id}", "1")
            .replace("{jid}", &owned.jid)
            .replace("{phone}", MEMBER)
    }

    /// A body the route takes, naming `owned`'s instance where it names one.
    fn body(&self, method: &str, template: &str, owned: &Owned) -> Option<Value> {
        Some(match (method, template) {
            ("get" | "delete", _) => return None,
            ("post", "/v1/groups") => {
                json!({"instance_id": owned.instance, "subject": "Scoped", "participants": [MEMBER]})
            }
            ("post", "/v1/jobs/groups") => {
                json!({"instance_ids": [owned.instance], "groups": [{"subject": "Scoped", "participants": [MEMBER]}]})
            }
            ("patch", "/v1/groups/{group}") => json!({"subject": "Renamed"}),
            ("post", "/v1/groups/{group}/participants/{action}") => json!({"participants": [MEMBER]}),
            ("post", "/v1/instances/{id}/pairing-code") => json!({"phone_number": "+12015550142"}),
            _ => json!({}),
        })
    }

    async fn call(&self, key: &str, method: &str, template: &str, owned: &Owned) -> (StatusCode, Value) {
        let path = self.path(template, owned);
        let body = self.body(method, template, owned);
        call_as(&self.app, key, method.to_uppercase().parse().unwrap(), &path, body).await
    }
}

#[tokio::test]
async fn a_scoped_key_is_not_sent_the_page_of_groups_an_account_wide_key_was_sent() {
    // Arrange: the admin key lists every group, so that page is kept (src/api/listed_groups.rs). The scoped key sees
    // two instances, so its query names none, as the admin's does: only the scope tells the two pages apart.
    let w = world().await;
    let third = w.app.new_instance(json!({})).await.id;
    let (_, scoped) =
        new_key(&w.app, json!({"name": "A and C", "instance_ids": [w.a.instance, third.parse::<i64>().unwrap()]}))
            .await;
    let (status, everything) = w.app.get("/v1/groups").await;
    assert_eq!(status, StatusCode::OK, "{everything}");
    let instances = |page: &Value| -> Vec<Value> {
        page["items"].as_array().unwrap().iter().map(|g| g["instance_id"].clone()).collect()
    };
    assert!(instances(&everything).contains(&json!(w.b.instance)), "{everything}");

    // Act
    let (status, mine) = call_as(&w.app, &scoped, Method::GET, "/v1/groups", None).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert!(!instances(&mine).is_empty(), "{mine}");
    assert!(instances(&mine).iter().all(|i| i == &json!(w.a.instance)), "only A's groups: {mine}");
}

#[tokio::test]
async fn a_scoped_key_sees_and_touches_only_its_instances_on_every_native_route() {
    // Arrange
    let w = world().await;
    let (_, scoped) = new_key(&w.app, json!({"name": "A only", "instance_ids": [w.a.instance]})).await;
    let routes = native_routes();
    assert!(routes.iter().any(|(m, p)| m == "post" && p == "/v1/instances/{id}/token/rotate"), "{routes:?}");

    // Act + Assert: B's records are not there (404), the account's are not its (403); nothing changed yet.
    for (method, template) in &routes {
        let (status, body) = w.call(&scoped, method, template, &w.b).await;
        match kind(method, template) {
            Kind::AccountWide => {
                assert_eq!(status, StatusCode::FORBIDDEN, "{method} {template}: {body}");
                assert_eq!(body["code"], "account_wide_key_required", "{method} {template}: {body}");
            }
            Kind::Instance => {
                assert_eq!(status, StatusCode::NOT_FOUND, "{method} {template} on B: {body}");
                assert_eq!(body["code"], "not_found", "{method} {template}: {body}");
            }
            Kind::Summary => {
                assert_eq!(status, StatusCode::OK, "{method} {template}: {body}");
                assert_eq!(body["instances"], 1, "only A is counted, of the account's two: {body}");
                assert_eq!(body["by_state"]["connected"], 1, "{body}");
            }
            Kind::List => {
                assert_eq!(status, StatusCode::OK, "{method} {template}: {body}");
                let items = body["items"].as_array().unwrap().clone();
                assert!(!items.is_empty(), "{template} lists A's records: {body}");
                for item in items {
                    let instance = item.get("instance_ids").map_or_else(|| &item["instance_id"], |ids| &ids[0]);
                    let instance = if template == "/v1/instances" { &item["id"] } else { instance };
                    assert_eq!(instance, &json!(w.a.instance), "{template} shows only A's: {item}");
                }
            }
        }
    }
    // A's records answer as they would to an admin key; deleting A goes last.
    let mut on_a: Vec<_> = routes.iter().filter(|(m, t)| kind(m, t) == Kind::Instance).collect();
    on_a.sort_by_key(|(m, _)| m == "delete");
    for (method, template) in on_a {
        let (status, body) = w.call(&scoped, method, template, &w.a).await;
        assert!(
            ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN, StatusCode::NOT_FOUND].contains(&status),
            "{method} {template} on A: {status} {body}"
        );
    }
    let (status, b) = w.app.get(&format!("/v1/groups/{}", w.b.group)).await;
    assert_eq!((status, &b["subject"]), (StatusCode::OK, &json!("B's group")), "B's group is untouched");
}

#[tokio::test]
async fn a_read_only_key_reads_everything_and_changes_nothing_on_every_native_route() {
    // Arrange
    let w = world().await;
    let (_, reader) = new_key(&w.app, json!({"name": "dashboard", "read_only": true})).await;

    // Act + Assert
    for (method, template) in native_routes() {
        let (status, body) = w.call(&reader, &method, &template, &w.a).await;
        if method == "get" {
            assert!(
                ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&status),
                "GET {template}: {status} {body}"
            );
        } else {
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {template}: {body}");
            assert_eq!(body["code"], "read_only_key", "{method} {template}: {body}");
        }
    }
    let (_, instances) = w.app.get("/v1/instances").await;
    assert_eq!(instances["items"].as_array().unwrap().len(), 2, "nothing was created or deleted: {instances}");
    let (_, group) = w.app.get(&format!("/v1/groups/{}", w.a.group)).await;
    assert_eq!(group["subject"], "A's group");
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once_on_every_native_route() {
    // Arrange: the key works, then is revoked.
    let w = world().await;
    let (id, key) = new_key(&w.app, json!({"name": "leaked"})).await;
    assert_eq!(call_as(&w.app, &key, Method::GET, "/v1/instances", None).await.0, StatusCode::OK);

    // Act
    let (status, body) = call_as(&w.app, &w.app.api_key, Method::DELETE, &format!("/v1/keys/{id}"), None).await;

    // Assert
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for (method, template) in native_routes() {
        let (status, body) = w.call(&key, &method, &template, &w.a).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {template}: {body}");
        assert_eq!(body["code"], "unauthorized", "{method} {template}: {body}");
    }
}

#[tokio::test]
async fn keys_are_listed_without_secrets_and_the_last_admin_key_cannot_be_revoked() {
    // Arrange
    let app = spawn_app().await;
    let (scoped_id, scoped) = new_key(&app, json!({"name": "crm", "instance_ids": [app.instance_id]})).await;

    // Act
    let (status, keys) = app.get("/v1/keys").await;

    // Assert: the bootstrap key and the new one, with prefix, scope and use; no secret or hash anywhere.
    assert_eq!(status, StatusCode::OK, "{keys}");
    assert_eq!(keys["next_cursor"], Value::Null, "one page: {keys}");
    let keys = keys["items"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let named = |name: &str| keys.iter().find(|k| k["name"] == name).unwrap_or_else(|| panic!("{keys:?}"));
    let (admin, crm) = (named("admin"), named("crm"));
    assert_eq!(
        (&admin["name"], &admin["instance_ids"], &admin["read_only"]),
        (&json!("admin"), &Value::Null, &json!(false))
    );
    assert_eq!(admin["last_used_at"], "2026-11-23T00:00:00Z", "the admin key was just used");
    assert_eq!((&crm["id"], &crm["instance_ids"]), (&json!(scoped_id), &json!([app.instance_id])));
    assert_eq!(crm["last_used_at"], Value::Null);
    assert!(scoped.starts_with(crm["prefix"].as_str().unwrap()));
    let text = serde_json::to_string(keys).unwrap();
    assert!(!text.contains(&scoped) && !text.contains(&app.api_key) && !text.contains("secret"), "{text}");

    // The only admin key stays (409); a scoped key cannot manage keys (403); a bad scope is a 422 naming it.
    let admin_id = admin["id"].as_str().unwrap();
    let (status, body) = app.call(Method::DELETE, &format!("/v1/keys/{admin_id}"), None).await;
    assert_eq!((status, &body["code"]), (StatusCode::CONFLICT, &json!("conflict")), "{body}");
    let (status, body) = call_as(&app, &scoped, Method::GET, "/v1/keys", None).await;
    assert_eq!((status, &body["code"]), (StatusCode::FORBIDDEN, &json!("account_wide_key_required")), "{body}");
    let (status, body) = app.post("/v1/keys", json!({"name": "x", "instance_ids": [7_103_999_999_i64]})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an instance that is not there, as for a batch: {body}");
    assert!(body["detail"].as_str().unwrap().contains("instance_ids[0] 7103999999"), "{body}");
    let (status, _) = app.post("/v1/keys", json!({"name": "x", "instance_ids": []})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // With a second admin key, the first can revoke itself and is refused at once.
    let (_, second) = new_key(&app, json!({"name": "admin 2"})).await;
    let (status, _) = app.call(Method::DELETE, &format!("/v1/keys/{admin_id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/v1/keys").await.0, StatusCode::UNAUTHORIZED);
    let (status, keys) = call_as(&app, &second, Method::GET, "/v1/keys", None).await;
    assert_eq!((status, keys["items"].as_array().unwrap().len()), (StatusCode::OK, 2));
}

// ---------- dialects that take the account key ----------

async fn twochat(app: &TestApp, key: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = app.client.request(method, app.url(path)).header("X-User-API-Key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    read(request.send().await.expect("request")).await
}

#[tokio::test]
async fn in_2chat_a_scoped_key_sees_only_its_numbers_and_a_read_only_or_revoked_key_is_refused() {
    // Arrange
    let w = world().await;
    let app = &w.app;
    let (_, scoped) = new_key(app, json!({"name": "A only", "instance_ids": [w.a.instance]})).await;
    let (_, reader) = new_key(app, json!({"name": "reader", "read_only": true})).await;
    let (revoked_id, revoked) = new_key(app, json!({"name": "gone"})).await;
    assert_eq!(app.call(Method::DELETE, &format!("/v1/keys/{revoked_id}"), None).await.0, StatusCode::NO_CONTENT);
    let create = |from: &str| json!({"from_number": from, "group": {"name": "2Chat group", "participants": [MEMBER]}});

    // Act + Assert: the scoped key.
    let (status, numbers) = twochat(app, &scoped, Method::GET, "/open/whatsapp/get-numbers", None).await;
    assert_eq!(status, StatusCode::OK, "{numbers}");
    let listed: Vec<_> = numbers["numbers"].as_array().unwrap().iter().map(|n| n["uuid"].clone()).collect();
    assert_eq!(listed, [json!(format!("WPN{}", w.a.instance))]);
    let b_paths = [
        format!("/open/whatsapp/groups/+{}", w.b_phone),
        format!("/open/whatsapp/group/WAG{}", w.b.group),
        format!("/open/whatsapp/channel/WPN{}/status", w.b.instance),
    ];
    for path in &b_paths {
        let (status, body) = twochat(app, &scoped, Method::GET, path, None).await;
        assert_eq!((status, &body["success"]), (StatusCode::NOT_FOUND, &json!(false)), "{path}: {body}");
    }
    let (status, body) =
        twochat(app, &scoped, Method::POST, "/open/whatsapp/group/create", Some(create(&format!("+{}", w.b_phone))))
            .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) =
        twochat(app, &scoped, Method::POST, "/open/whatsapp/group/create", Some(create(&app.instance_phone))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The read-only key reads, and creates nothing.
    assert_eq!(twochat(app, &reader, Method::GET, &b_paths[1], None).await.0, StatusCode::OK);
    let (status, body) =
        twochat(app, &reader, Method::POST, "/open/whatsapp/group/create", Some(create(&app.instance_phone))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!((&body["success"], &body["error"]), (&json!(false), &json!("read_only_key")), "2Chat's shape: {body}");

    // The revoked key is refused.
    let (status, body) = twochat(app, &revoked, Method::GET, "/open/whatsapp/get-numbers", None).await;
    assert_eq!((status, &body["error"]), (StatusCode::UNAUTHORIZED, &json!("unauthorized")), "{body}");
}

async fn zapi(app: &TestApp, key: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = app.client.request(method, app.url(path)).header("Client-Token", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    read(request.send().await.expect("request")).await
}

#[tokio::test]
async fn in_z_api_a_scoped_key_reaches_only_its_instances_and_a_read_only_key_only_reads() {
    // Arrange: two instances with their tokens.
    let app = spawn_app().await;
    let a = app.new_instance(json!({})).await;
    let b = app.new_instance(json!({})).await;
    let (_, scoped) = new_key(&app, json!({"name": "A only", "instance_ids": [a.id.parse::<i64>().unwrap()]})).await;
    let (_, reader) = new_key(&app, json!({"name": "reader", "read_only": true})).await;
    let path = |c: &Credentials, method: &str| format!("/instances/{}/token/{}/{method}", c.id, c.token);
    let create = json!({"groupName": "Z-API group", "phones": [MEMBER.trim_start_matches('+')]});

    // Act + Assert: the scoped key on A and on B.
    assert_eq!(zapi(&app, &scoped, Method::GET, &path(&a, "status"), None).await.0, StatusCode::OK);
    let (status, body) = zapi(&app, &scoped, Method::GET, &path(&b, "status"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = zapi(&app, &scoped, Method::POST, &path(&b, "create-group"), Some(create.clone())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // The read-only key: reads (even Z-API's POST that reads the invite link), but no change (even its GETs that
    // change: disconnect, phone-code).
    let (status, created) =
        zapi(&app, &app.api_key, Method::POST, &path(&a, "create-group"), Some(create.clone())).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let group = created["phone"].as_str().unwrap();
    assert_eq!(zapi(&app, &reader, Method::GET, &path(&a, "status"), None).await.0, StatusCode::OK);
    let (status, body) =
        zapi(&app, &reader, Method::POST, &path(&a, &format!("group-invitation-link/{group}")), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (verb, method, body) in [
        (Method::POST, "create-group".to_owned(), Some(create.clone())),
        (Method::GET, "disconnect".to_owned(), None),
        (Method::GET, "phone-code/12015550142".to_owned(), None),
        (Method::POST, format!("redefine-invitation-link/{group}"), None),
    ] {
        let (status, answer) = zapi(&app, &reader, verb, &path(&a, &method), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method}: {answer}");
        assert!(answer.to_string().contains("read-only"), "{method}: {answer}");
    }
    let (_, state) = app.get(&format!("/v1/instances/{}", a.id)).await;
    assert_eq!(state["state"]["status"], "connected", "the read-only key did not disconnect A: {state}");
}

// ---------- instance tokens ----------

#[tokio::test]
async fn a_rotated_token_is_refused_and_the_new_one_taken_in_green_z_api_and_wawp() {
    // Arrange
    let app = spawn_app().await;
    let a = app.new_instance(json!({})).await;
    let green = |token: &str| format!("/waInstance{}/getStateInstance/{token}", a.id);
    let zapi_path = |token: &str| format!("/instances/{}/token/{token}/status", a.id);
    let wawp = |token: &str| format!("/v2/session/info?instance_id={}&access_token={token}", a.id);
    let get = |path: String| {
        let request = app.client.get(app.url(&path)).header("Client-Token", &app.api_key);
        async move { request.send().await.expect("request").status() }
    };
    assert_eq!(get(green(&a.token)).await, StatusCode::OK);

    // Act
    let (status, rotated) = app.post(&format!("/v1/instances/{}/token/rotate", a.id), json!({})).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["token"].as_str().unwrap();
    assert_ne!(new, a.token);
    for (old, fresh) in
        [(green(&a.token), green(new)), (zapi_path(&a.token), zapi_path(new)), (wawp(&a.token), wawp(new))]
    {
        assert_eq!(get(old.clone()).await, StatusCode::UNAUTHORIZED, "{old}");
        assert_eq!(get(fresh.clone()).await, StatusCode::OK, "{fresh}");
    }
    let (status, body) = app.post("/v1/instances/7103999999/token/rotate", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn instance_a_token_is_refused_on_instance_b_in_green_z_api_and_wawp() {
    // Arrange
    let app = spawn_app().await;
    let a = app.new_instance(json!({})).await;
    let b = app.new_instance(json!({})).await;

    // Act + Assert
    for path in [
        format!("/waInstance{}/getStateInstance/{}", b.id, a.token),
        format!("/instances/{}/token/{}/status", b.id, a.token),
        format!("/v2/session/info?instance_id={}&access_token={}", b.id, a.token),
    ] {
        let response = app.client.get(app.url(&path)).header("Client-Token", &app.api_key).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}
