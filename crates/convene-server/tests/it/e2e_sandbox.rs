use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn people_are_scripted_and_read_back() {
    let app = spawn_app().await;
    let (status, person) = app.get("/v1/sandbox/people/+17137157533").await;
    assert_eq!(status, StatusCode::OK, "{person}");
    assert_eq!(
        person,
        json!({"phone": "+17137157533", "registered": true, "group_add": "everyone", "contacts": [], "blocked": [], "name": null})
    );

    let (status, person) = app
        .put(
            "/v1/sandbox/people/17137157533@c.us",
            json!({"group_add": "contacts", "add_contacts": [app.instance_phone], "name": "Ana"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{person}");
    assert_eq!(person["group_add"], "contacts");
    assert_eq!(person["contacts"], json!([app.instance_phone]));

    // In her contacts, so the add goes through despite her setting.
    let body = app.create_group("Friends", &["+17137157533"]).await;
    assert_eq!(body["participants"][0]["outcome"], "added");

    let (status, body) = app.get("/v1/sandbox/people/not-a-number").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = app.put("/v1/sandbox/people/+17137157533", json!({"group_add": "sometimes"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn faults_are_read_set_and_validated() {
    let app = spawn_app().await;
    let (status, faults) = app.get("/v1/sandbox/faults").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(faults, json!({"latency_ms": 0, "reply_lost_rate": 0.0, "error_rate": 0.0, "unreachable": false}));
    let (status, faults) = app.put("/v1/sandbox/faults", json!({"latency_ms": 5, "error_rate": 0.25})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(faults, json!({"latency_ms": 5, "reply_lost_rate": 0.0, "error_rate": 0.25, "unreachable": false}));
    let (status, body) = app.put("/v1/sandbox/faults", json!({"error_rate": 1.5})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, faults) = app.get("/v1/sandbox/faults").await;
    assert_eq!(faults["error_rate"], 0.25, "a refused change changes nothing");
}

#[tokio::test]
async fn join_approval_turns_a_link_join_into_a_pending_request() {
    let app = spawn_app().await;
    let (_, created) = app
        .post(
            "/v1/groups",
            json!({"instance_id": app.instance_id, "subject": "Approval", "participants": ["+17137157533"],
                   "settings": {"join_approval": true}}),
        )
        .await;
    let id = created["group"]["id"].as_str().unwrap();
    let (_, link) = app.get(&format!("/v1/groups/{id}/invite-link")).await;
    let (status, body) =
        app.post("/v1/sandbox/join", json!({"phone": "+18647351567", "invite": link["invite_link"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"], "pending");
    let (_, network) = app.get(&format!("/v1/sandbox/groups/{}", created["group"]["jid"].as_str().unwrap())).await;
    assert_eq!(network["pending_join_requests"], json!(["+18647351567"]));

    // An admin approves the request; approving someone who never asked says so.
    let (status, body) = app
        .post(
            &format!("/v1/groups/{id}/participants/approve"),
            json!({"participants": ["+18647351567", "+447700176576"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(crate::helpers::outcome_of(&body["participants"], "+18647351567")["outcome"], "added");
    assert_eq!(crate::helpers::outcome_of(&body["participants"], "+447700176576")["outcome"], "no_join_request");
    let (_, network) = app.get(&format!("/v1/sandbox/groups/{}", created["group"]["jid"].as_str().unwrap())).await;
    assert_eq!(network["pending_join_requests"], json!([]));
    assert_eq!(network["members"].as_array().unwrap().len(), 3);
}
