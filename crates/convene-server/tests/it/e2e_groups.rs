use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{outcome_of, spawn_app};

#[tokio::test]
async fn a_group_is_created_with_an_outcome_for_every_participant() {
    // Arrange: one person who only lets contacts add them, one without WhatsApp, one who blocked us.
    let app = spawn_app().await;
    app.person("+17137157533", json!({"group_add": "contacts"})).await;
    app.person("+18647351567", json!({"registered": false})).await;
    app.person("+447700176576", json!({"block": [app.instance_phone]})).await;

    // Act
    let body = app
        .create_group(
            "INCIDENT-999 | War room",
            &["+1 713-715-7533", "+18647351567", "+447700176576", "+595981048477", "595981048477@c.us", "+1 000"],
        )
        .await;

    // Assert: the group exists and every input has its own named outcome.
    let participants = &body["participants"];
    assert_eq!(participants.as_array().unwrap().len(), 5, "the duplicate spelling collapsed: {participants}");
    let refused = outcome_of(participants, "+1 713-715-7533");
    assert_eq!(refused["outcome"], "privacy_blocked");
    assert_eq!(refused["code"], 403);
    assert!(refused["add_request"]["code"].as_str().is_some_and(|c| !c.is_empty()), "{refused}");
    assert_eq!(refused["add_request"]["expires_at"], "2026-11-26T00:00:00Z", "three days after now");
    assert_eq!(outcome_of(participants, "+18647351567")["outcome"], "not_on_whatsapp");
    let blocked = outcome_of(participants, "+447700176576");
    assert_eq!(blocked["outcome"], "privacy_blocked");
    assert!(blocked["add_request"].is_null(), "a block gives no invite code");
    assert_eq!(outcome_of(participants, "+595981048477")["outcome"], "added");
    assert_eq!(outcome_of(participants, "+1 000")["outcome"], "invalid_number");

    let group = &body["group"];
    assert!(group["jid"].as_str().unwrap().ends_with("@g.us"));
    let members: Vec<_> = group["members"].as_array().unwrap().iter().map(|m| m["phone"].clone()).collect();
    assert_eq!(members, [json!(app.instance_phone), json!("+595981048477")]);
    let (status, network) = app.get(&format!("/v1/sandbox/groups/{}", group["jid"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(network["subject"], "INCIDENT-999 | War room");
    assert_eq!(network["members"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn creation_settings_and_description_reach_the_network() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/v1/groups",
            json!({
                "instance_id": app.instance_id,
                "subject": "Onboarding ACME",
                "description": "Welcome!",
                "participants": ["+17137157533"],
                "settings": {"announce_only": true, "locked_info": true, "join_approval": true, "disappearing_messages": "7d"}
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let jid = body["group"]["jid"].as_str().unwrap();
    let (_, network) = app.get(&format!("/v1/sandbox/groups/{jid}")).await;
    assert_eq!(network["description"], "Welcome!");
    assert_eq!(
        network["settings"],
        json!({"announce_only": true, "locked_info": true, "join_approval": true, "disappearing_messages": "7d"})
    );
}

#[tokio::test]
async fn a_group_is_found_by_uuid_by_jid_and_by_the_z_api_spelling() {
    let app = spawn_app().await;
    let created = app.create_group("Lookup", &["+17137157533"]).await;
    let id = created["group"]["id"].as_str().unwrap();
    let jid = created["group"]["jid"].as_str().unwrap();
    let dash = jid.replace("@g.us", "-group");
    for reference in [id, jid, dash.as_str()] {
        let (status, body) = app.get(&format!("/v1/groups/{reference}")).await;
        assert_eq!(status, StatusCode::OK, "{reference}: {body}");
        assert_eq!(body["id"], id);
        assert_eq!(body["members"].as_array().unwrap().len(), 2);
    }
    let (status, body) = app.get("/v1/groups/00000000-0000-0000-0000-000000000000").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = app.get("/v1/groups/120363000000000000@g.us").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app.get("/v1/groups/not-a-group").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "not_found");
}

#[tokio::test]
async fn groups_are_listed_a_page_at_a_time_without_gaps() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(app.create_group(&format!("G{i}"), &["+17137157533"]).await["group"]["id"].clone());
    }
    let mut seen = Vec::new();
    let mut path = "/v1/groups?limit=2".to_owned();
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(page["items"].as_array().unwrap().iter().map(|g| g["id"].clone()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/groups?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, created);
    let (status, body) = app.get("/v1/groups?limit=0").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["fields"][0]["field"], "limit");
    let (status, body) = app.get("/v1/groups?cursor=garbage").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = app.get(&format!("/v1/groups?instance_id={}", app.instance_id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn a_page_of_groups_asked_for_again_shows_every_change_made_since() {
    // Arrange: the page is asked for twice, so it is kept as sent (src/api/listed_groups.rs) on SQLite.
    let app = spawn_app().await;
    let first = app.create_group("Before", &["+17137157533"]).await["group"]["id"].as_str().unwrap().to_owned();
    let subjects = |page: serde_json::Value| -> Vec<String> {
        page["items"].as_array().unwrap().iter().map(|g| g["subject"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(subjects(app.get("/v1/groups").await.1), ["Before"]);
    assert_eq!(subjects(app.get("/v1/groups").await.1), ["Before"]);

    // Act + Assert: a change through the API, a group added, one left, and the instance deleted.
    let (status, body) = app.patch(&format!("/v1/groups/{first}"), json!({"subject": "After"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(subjects(app.get("/v1/groups").await.1), ["After"]);
    app.create_group("Second", &["+17137157533"]).await;
    assert_eq!(subjects(app.get("/v1/groups").await.1), ["After", "Second"]);
    let (status, body) = app.post(&format!("/v1/groups/{first}/leave"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, page) = app.get("/v1/groups").await;
    assert!(page["items"][0]["left_at"].is_string(), "{page}");
    let (status, body) = app.call(reqwest::Method::DELETE, &format!("/v1/instances/{}", app.instance_id), None).await;
    assert!(status.is_success(), "{status}: {body}");
    assert_eq!(subjects(app.get("/v1/groups").await.1), Vec::<String>::new());
}

#[tokio::test]
async fn groups_are_searched_by_subject_ignoring_case_and_on_one_instance() {
    // Arrange
    let app = spawn_app().await;
    let (_, second) = app.post("/v1/instances", json!({"name": "Second"})).await;
    let mut ids = Vec::new();
    for subject in ["INCIDENT-1 | War room", "Onboarding ACME", "incident-2 | war ROOM"] {
        ids.push(app.create_group(subject, &["+17137157533"]).await["group"]["id"].clone());
    }

    // Act
    let (status, found) = app.get("/v1/groups?subject_contains=War%20Room&limit=1").await;
    let (_, rest) = app
        .get(&format!("/v1/groups?subject_contains=War%20Room&cursor={}", found["next_cursor"].as_str().unwrap()))
        .await;
    let (_, elsewhere) = app.get(&format!("/v1/groups?subject_contains=war&instance_id={}", second["id"])).await;
    let (_, everything) = app.get("/v1/groups?subject_contains=").await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["items"][0]["id"], ids[0]);
    assert_eq!(rest["items"].as_array().unwrap().iter().map(|g| g["id"].clone()).collect::<Vec<_>>(), [ids[2].clone()]);
    assert_eq!(elsewhere["items"], json!([]));
    assert_eq!(everything["items"].as_array().unwrap().len(), 3, "an empty search is no filter");
}

#[tokio::test]
async fn a_created_group_names_the_job_that_has_every_participants_outcome_and_a_found_one_names_none() {
    // Arrange
    let app = spawn_app().await;
    let (_, second) = app.post("/v1/instances", json!({"name": "Second"})).await;
    app.person("+18647351567", json!({"registered": false})).await;
    let created = app.create_group("Made here", &[second["phone"].as_str().unwrap(), "+18647351567"]).await;
    let jid = created["group"]["jid"].as_str().unwrap();

    // Act
    let job_id = created["group"]["creation_job_id"].as_str().expect("a created group names its job").to_owned();
    let (status, job) = app.get(&format!("/v1/jobs/{job_id}")).await;
    let (_, found) = app.get(&format!("/v1/groups/{jid}?instance_id={}", second["id"])).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["result"]["group_id"], created["group"]["id"]);
    assert_eq!(outcome_of(&job["result"]["participants"], "+18647351567")["outcome"], "not_on_whatsapp");
    let (_, again) = app.get(&format!("/v1/groups/{}", created["group"]["id"].as_str().unwrap())).await;
    assert_eq!(again["creation_job_id"], job_id.as_str());
    assert_ne!(found["id"], created["group"]["id"], "the second number's own record of the group");
    assert!(found["creation_job_id"].is_null(), "{found}");
}

#[tokio::test]
async fn subject_description_and_settings_can_be_changed() {
    let app = spawn_app().await;
    let created = app.create_group("Before", &["+17137157533"]).await;
    let id = created["group"]["id"].as_str().unwrap();
    let (status, body) = app
        .patch(
            &format!("/v1/groups/{id}"),
            json!({"subject": "After", "description": "Now with a description", "settings": {"announce_only": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["subject"], "After");
    assert_eq!(body["description"], "Now with a description");
    assert_eq!(body["settings"]["announce_only"], true);
    let (_, network) = app.get(&format!("/v1/sandbox/groups/{}", body["jid"].as_str().unwrap())).await;
    assert_eq!(network["subject"], "After");
    assert_eq!(network["settings"]["announce_only"], true);
    assert_eq!(network["settings"]["locked_info"], false, "untouched settings stay");

    // Every bad field is named at once.
    let (status, body) = app
        .patch(&format!("/v1/groups/{id}"), json!({"subject": "x".repeat(101), "description": "d".repeat(2049)}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<_> = body["fields"].as_array().unwrap().iter().map(|f| f["field"].clone()).collect();
    assert_eq!(fields, [json!("subject"), json!("description")]);
    let (status, unchanged) = app.patch(&format!("/v1/groups/{id}"), json!({"subject": null, "settings": {}})).await;
    assert_eq!(status, StatusCode::OK, "a patch that changes nothing is the group as it is: {unchanged}");
    assert_eq!(unchanged["settings"]["announce_only"], true);
    let (status, body) =
        app.patch(&format!("/v1/groups/{id}"), json!({"settings": {"disappearing_messages": "1h"}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn a_group_picture_is_accepted_as_jpeg_png_or_form_and_checked() {
    let app = spawn_app().await;
    let created = app.create_group("Pictures", &["+17137157533"]).await;
    let path = format!("/v1/groups/{}/picture", created["group"]["id"].as_str().unwrap());
    let url = app.url(&path);
    let jpeg = [&[0xFF, 0xD8, 0xFF, 0xE0][..], &[0u8; 512]].concat();
    let put = |content_type: &str, body: Vec<u8>| {
        app.client.put(&url).bearer_auth(&app.api_key).header("content-type", content_type).body(body).send()
    };

    assert_eq!(put("image/jpeg", jpeg.clone()).await.unwrap().status(), StatusCode::NO_CONTENT);
    let (_, network) = app.get(&format!("/v1/sandbox/groups/{}", created["group"]["jid"].as_str().unwrap())).await;
    assert_eq!(network["has_picture"], true);
    let png = [&b"\x89PNG\r\n\x1a\n"[..], &[0u8; 64]].concat();
    assert_eq!(put("image/png", png).await.unwrap().status(), StatusCode::NO_CONTENT);

    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(jpeg.clone()).file_name("a.jpg").mime_str("image/jpeg").unwrap());
    let res = app.client.put(&url).bearer_auth(&app.api_key).multipart(form).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    let res = put("image/jpeg", b"GIF89a not really".to_vec()).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = put("text/plain", jpeg.clone()).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mut huge = jpeg.clone();
    huge.resize(6 * 1024 * 1024, 0);
    let res = put("image/jpeg", huge).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let mut just_over = jpeg;
    just_over.resize(5 * 1024 * 1024 + 1, 0);
    let (status, body) = crate::helpers::read(put("image/jpeg", just_over).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["detail"].as_str().is_some() && body["fields"][0]["message"].as_str().unwrap().contains("limit"));
}

#[tokio::test]
async fn leaving_a_group_keeps_the_record_and_stops_changes() {
    let app = spawn_app().await;
    let created = app.create_group("Leaving", &["+17137157533"]).await;
    let id = created["group"]["id"].as_str().unwrap();
    let (status, body) = app.post(&format!("/v1/groups/{id}/leave"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["left_at"].is_string());
    let (_, network) = app.get(&format!("/v1/sandbox/groups/{}", body["jid"].as_str().unwrap())).await;
    let members: Vec<_> = network["members"].as_array().unwrap().iter().map(|m| m["phone"].clone()).collect();
    assert_eq!(members, [json!("+17137157533")], "the group lives on without us");
    let (status, body) = app.get(&format!("/v1/groups/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["members"].is_null());
    let (status, body) = app.patch(&format!("/v1/groups/{id}"), json!({"subject": "Nope"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[tokio::test]
async fn invite_links_can_be_read_used_and_reset() {
    let app = spawn_app().await;
    let created = app.create_group("Links", &["+17137157533"]).await;
    let id = created["group"]["id"].as_str().unwrap();
    let (status, body) = app.get(&format!("/v1/groups/{id}/invite-link")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let old = body["invite_link"].as_str().unwrap().to_owned();
    assert!(old.starts_with("https://chat.whatsapp.com/"));

    let (status, body) = app.post("/v1/sandbox/join", json!({"phone": "+18647351567", "invite": old})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"], "joined");

    let (status, body) = app.post(&format!("/v1/groups/{id}/invite-link/reset"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let new = body["invite_link"].as_str().unwrap();
    assert_ne!(new, old);
    let (status, _) = app.post("/v1/sandbox/join", json!({"phone": "+12123334444", "invite": old})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the old link no longer works");
    let (_, group) = app.get(&format!("/v1/groups/{id}")).await;
    assert_eq!(group["members"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_lost_reply_is_reconciled_and_the_group_exists_once() {
    let app = spawn_app().await;
    let (status, _) = app.put("/v1/sandbox/faults", json!({"reply_lost_rate": 1.0})).await;
    assert_eq!(status, StatusCode::OK);
    let body = app.create_group("Lost reply", &["+17137157533"]).await;
    assert_eq!(outcome_of(&body["participants"], "+17137157533")["outcome"], "added");
    let (_, network) = app.get("/v1/sandbox/groups").await;
    let same: Vec<_> = network.as_array().unwrap().iter().filter(|g| g["subject"] == "Lost reply").collect();
    assert_eq!(same.len(), 1);
    let (_, listed) = app.get("/v1/groups").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_injected_network_error_is_a_bad_gateway_and_creates_nothing() {
    let app = spawn_app().await;
    app.put("/v1/sandbox/faults", json!({"error_rate": 1.0})).await;
    let (status, body) = app
        .post(
            "/v1/groups",
            json!({"instance_id": app.instance_id, "subject": "Fails", "participants": ["+17137157533"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["code"], "network_error");
    let (_, network) = app.get("/v1/sandbox/groups").await;
    assert_eq!(network.as_array().unwrap().len(), 0);
    let (_, listed) = app.get("/v1/groups").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 0);
}
