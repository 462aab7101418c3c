use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{outcome_of, spawn_app};

#[tokio::test]
async fn participants_are_added_removed_promoted_and_demoted_with_outcomes() {
    let app = spawn_app().await;
    let created = app.create_group("People", &["+17137157533"]).await;
    let id = created["group"]["id"].as_str().unwrap();
    let base = format!("/v1/groups/{id}/participants");

    // Add: one new, one already in, one invalid.
    let (status, body) =
        app.post(&format!("{base}/add"), json!({"participants": ["+18647351567", "17137157533@c.us", "+1 000"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let p = &body["participants"];
    assert_eq!(outcome_of(p, "+18647351567")["outcome"], "added");
    assert_eq!(outcome_of(p, "17137157533@c.us")["outcome"], "already_member");
    assert_eq!(outcome_of(p, "17137157533@c.us")["code"], 409);
    assert_eq!(outcome_of(p, "+1 000")["outcome"], "invalid_number");

    // Promote, then demote.
    let (_, body) =
        app.post(&format!("{base}/promote"), json!({"participants": ["+18647351567", "+447700176576"]})).await;
    assert_eq!(outcome_of(&body["participants"], "+18647351567")["outcome"], "promoted");
    assert_eq!(outcome_of(&body["participants"], "+447700176576")["outcome"], "not_member");
    let (_, group) = app.get(&format!("/v1/groups/{id}")).await;
    let role = |g: &serde_json::Value, phone: &str| {
        g["members"].as_array().unwrap().iter().find(|m| m["phone"] == phone).map(|m| m["role"].clone())
    };
    assert_eq!(role(&group, "+18647351567"), Some(json!("admin")));
    let (_, body) = app.post(&format!("{base}/demote"), json!({"participants": ["+18647351567"]})).await;
    assert_eq!(outcome_of(&body["participants"], "+18647351567")["outcome"], "demoted");

    // Remove.
    let (_, body) = app.post(&format!("{base}/remove"), json!({"participants": ["+18647351567"]})).await;
    assert_eq!(outcome_of(&body["participants"], "+18647351567")["outcome"], "removed");
    let (_, group) = app.get(&format!("/v1/groups/{id}")).await;
    assert_eq!(role(&group, "+18647351567"), None);

    // Unknown action, the instance's own number, and an empty list.
    let (status, _) = app.post(&format!("{base}/kick"), json!({"participants": ["+18647351567"]})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app.post(&format!("{base}/add"), json!({"participants": [app.instance_phone]})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["fields"][0]["field"], "participants[0]");
    let (status, _) = app.post(&format!("{base}/add"), json!({"participants": []})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn someone_who_left_recently_cannot_be_added_back_until_the_time_passes() {
    let app = spawn_app().await;
    let created = app.create_group("Come back", &["+17137157533"]).await;
    let jid = created["group"]["jid"].as_str().unwrap();
    let (status, _) = app.post(&format!("/v1/sandbox/groups/{jid}/leave"), json!({"phone": "+17137157533"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let add = json!({"participants": ["+17137157533"]});
    let (_, body) = app.post(&format!("/v1/groups/{jid}/participants/add"), add.clone()).await;
    assert_eq!(outcome_of(&body["participants"], "+17137157533")["outcome"], "recently_left");
    assert_eq!(outcome_of(&body["participants"], "+17137157533")["code"], 408);

    app.clock.advance(std::time::Duration::from_secs(86_401));
    let (_, body) = app.post(&format!("/v1/groups/{jid}/participants/add"), add).await;
    assert_eq!(outcome_of(&body["participants"], "+17137157533")["outcome"], "added");
}

#[tokio::test]
async fn a_privacy_refusal_carries_a_code_the_person_can_accept_until_it_expires() {
    let app = spawn_app().await;
    app.person("+17137157533", json!({"group_add": "nobody"})).await;
    app.person("+18647351567", json!({"group_add": "nobody"})).await;
    let created = app.create_group("Invite me", &["+17137157533", "+18647351567"]).await;
    let jid = created["group"]["jid"].as_str().unwrap();
    assert_eq!(outcome_of(&created["participants"], "+17137157533")["outcome"], "privacy_blocked");

    let (status, body) =
        app.post(&format!("/v1/sandbox/groups/{jid}/accept-invite"), json!({"phone": "+17137157533"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"], "joined");

    app.clock.advance(std::time::Duration::from_secs(3 * 86_400 + 1));
    let (status, body) =
        app.post(&format!("/v1/sandbox/groups/{jid}/accept-invite"), json!({"phone": "+18647351567"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("expired"));

    let (_, group) = app.get(&format!("/v1/groups/{jid}")).await;
    let phones: Vec<_> = group["members"].as_array().unwrap().iter().map(|m| m["phone"].clone()).collect();
    assert_eq!(phones, [json!(app.instance_phone), json!("+17137157533")]);
}

#[tokio::test]
async fn the_creator_cannot_be_removed_or_demoted_by_another_admin() {
    // Arrange: a second instance is made admin of a group the first created.
    let app = spawn_app().await;
    let (_, second) = app.post("/v1/instances", json!({"name": "Co-admin"})).await;
    let second_phone = second["phone"].as_str().unwrap().to_owned();
    let created = app.create_group("Owned", &[&second_phone, "+17137157533"]).await;
    let jid = created["group"]["jid"].as_str().unwrap().to_owned();
    let (_, body) =
        app.post(&format!("/v1/groups/{jid}/participants/promote"), json!({"participants": [second_phone]})).await;
    assert_eq!(outcome_of(&body["participants"], &second_phone)["outcome"], "promoted");

    // Act: the second instance, acting on a group it did not create (named by JID and instance), tries to demote
    // and remove the creator, and removes an ordinary member.
    let as_second = |action: &str| format!("/v1/groups/{jid}/participants/{action}?instance_id={}", second["id"]);
    let (status, demote) = app.post(&as_second("demote"), json!({"participants": [app.instance_phone]})).await;
    assert_eq!(status, StatusCode::OK, "{demote}");
    let (_, remove) =
        app.post(&as_second("remove"), json!({"participants": [app.instance_phone, "+17137157533"]})).await;

    // Assert
    assert_eq!(outcome_of(&demote["participants"], &app.instance_phone)["outcome"], "not_allowed");
    assert_eq!(outcome_of(&remove["participants"], &app.instance_phone)["outcome"], "not_allowed");
    assert_eq!(outcome_of(&remove["participants"], "+17137157533")["outcome"], "removed");
    let (_, network) = app.get(&format!("/v1/sandbox/groups/{jid}")).await;
    let creator = network["members"].as_array().unwrap().iter().find(|m| m["phone"] == app.instance_phone.as_str());
    assert_eq!(creator.map(|m| m["role"].clone()), Some(json!("creator")));

    // Both instances now have a record of the group, so the bare JID is ambiguous.
    let (status, body) = app.get(&format!("/v1/groups/{jid}")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("instance_id"));
}

#[tokio::test]
async fn an_instance_that_is_not_admin_is_refused() {
    let app = spawn_app().await;
    let (_, second) = app.post("/v1/instances", json!({})).await;
    let created = app.create_group("Members only", &[second["phone"].as_str().unwrap()]).await;
    let jid = created["group"]["jid"].as_str().unwrap();
    let (status, body) = app
        .post(
            &format!("/v1/groups/{jid}/participants/add?instance_id={}", second["id"]),
            json!({"participants": ["+17137157533"]}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "not_group_admin");
    let (status, _) = app.get(&format!("/v1/groups/120363000000000001@g.us?instance_id={}", second["id"])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn with_auto_invite_a_privacy_refusal_becomes_a_private_invite_the_person_can_accept() {
    // Arrange: one person refuses adds from strangers, one more is added later the same way.
    let app = spawn_app().await;
    app.person("+17137157533", json!({"group_add": "nobody"})).await;
    app.person("+18647351567", json!({"group_add": "contacts"})).await;

    // Act
    let (status, created) = app
        .post(
            "/v1/groups",
            json!({"instance_id": app.instance_id, "subject": "Invited", "participants": ["+17137157533"], "auto_invite": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let jid = created["group"]["jid"].as_str().unwrap();
    let (_, added) = app
        .post(
            &format!("/v1/groups/{jid}/participants/add"),
            json!({"participants": ["+18647351567"], "auto_invite": true}),
        )
        .await;

    // Assert: both reported as invited, each got a group invite carrying the network's code, and accepting works.
    let invited = outcome_of(&created["participants"], "+17137157533");
    assert_eq!(invited["outcome"], "invite_sent", "{invited}");
    assert_eq!(outcome_of(&added["participants"], "+18647351567")["outcome"], "invite_sent");
    let (_, inbox) = app.get("/v1/sandbox/people/+17137157533/inbox").await;
    assert_eq!(inbox[0]["kind"]["type"], "group_invite", "{inbox}");
    assert_eq!(inbox[0]["kind"]["group"], jid);
    assert_eq!(inbox[0]["kind"]["code"], invited["add_request"]["code"]);
    assert_eq!(inbox[0]["from"], app.instance_phone);
    for phone in ["+17137157533", "+18647351567"] {
        let (status, body) =
            app.post(&format!("/v1/sandbox/groups/{jid}/accept-invite"), json!({"phone": phone})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (_, group) = app.get(&format!("/v1/groups/{jid}")).await;
    assert_eq!(group["members"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn without_auto_invite_nobody_is_messaged() {
    let app = spawn_app().await;
    app.person("+17137157533", json!({"group_add": "nobody"})).await;
    let created = app.create_group("Quiet", &["+17137157533"]).await;
    assert_eq!(outcome_of(&created["participants"], "+17137157533")["outcome"], "privacy_blocked");
    let (_, inbox) = app.get("/v1/sandbox/people/+17137157533/inbox").await;
    assert_eq!(inbox, json!([]));
}
