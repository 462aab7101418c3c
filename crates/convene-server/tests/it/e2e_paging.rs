//! Every list of the native API pages the same way: `?limit=&cursor=` in, `{items, next_cursor}` out, limits 1 to
//! 200, and a bad limit or cursor refused with a 422 naming it.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// Every list, each with at least three items once `arrange` has run.
async fn arrange(app: &TestApp) -> Vec<String> {
    for name in ["Second", "Third"] {
        app.new_instance(json!({"name": name})).await;
    }
    let (status, endpoint) = app.post("/v1/webhooks", json!({"url": "http://127.0.0.1:9/hook"})).await;
    assert_eq!(status, StatusCode::CREATED, "{endpoint}");
    for url in ["http://127.0.0.1:9/two", "http://127.0.0.1:9/three"] {
        assert_eq!(app.post("/v1/webhooks", json!({"url": url})).await.0, StatusCode::CREATED);
    }
    for subject in ["Paged 1", "Paged 2", "Paged 3"] {
        app.create_group(subject, &["+17137157533"]).await;
    }
    let groups: Vec<Value> =
        (0..3).map(|i| json!({"subject": format!("Queued {i}"), "participants": ["+17137157533"]})).collect();
    let (status, queued) =
        app.post("/v1/jobs/groups", json!({"instance_ids": [app.instance_id], "groups": groups})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let endpoint = endpoint["id"].as_str().unwrap();
    let mut lists: Vec<String> =
        ["/v1/instances", "/v1/groups", "/v1/jobs", "/v1/events", "/v1/webhooks"].map(str::to_owned).to_vec();
    lists.push(format!("/v1/webhooks/{endpoint}/deliveries"));
    lists
}

fn item_key(item: &Value) -> String {
    item.get("seq").or_else(|| item.get("id")).map(Value::to_string).expect("every item has an id or seq")
}

#[tokio::test]
async fn every_list_walks_page_by_page_with_the_same_cursor_and_envelope() {
    // Arrange
    let app = spawn_app().await;
    let lists = arrange(&app).await;

    for list in lists {
        // Act
        let (status, whole) = app.get(&format!("{list}?limit=200")).await;
        let walked = app.all_pages(&format!("{list}?limit=2")).await;
        let (_, first) = app.get(&format!("{list}?limit=2")).await;

        // Assert
        assert_eq!(status, StatusCode::OK, "{list}: {whole}");
        let whole = whole["items"].as_array().unwrap().clone();
        assert!(whole.len() >= 3, "{list} has {} items", whole.len());
        assert_eq!(
            walked.iter().map(item_key).collect::<Vec<_>>(),
            whole.iter().map(item_key).collect::<Vec<_>>(),
            "{list}"
        );
        assert_eq!(walked.iter().map(item_key).collect::<HashSet<_>>().len(), walked.len(), "{list} repeats an item");
        assert!(first["next_cursor"].is_string(), "{list}: {first}");
        assert_eq!(first["items"].as_array().unwrap().len(), 2, "{list}");
        let (_, only) = app.get(&format!("{list}?limit=200")).await;
        assert!(only["next_cursor"].is_null(), "{list}: the last page has no cursor");
    }
}

#[tokio::test]
async fn every_list_refuses_a_limit_outside_1_to_200_and_a_foreign_cursor_naming_the_parameter() {
    // Arrange
    let app = spawn_app().await;
    let lists = arrange(&app).await;

    for list in lists {
        for (query, field) in
            [("limit=0", "limit"), ("limit=201", "limit"), ("limit=ten", "limit"), ("cursor=garbage", "cursor")]
        {
            // Act
            let (status, body) = app.get(&format!("{list}?{query}")).await;

            // Assert
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{list}?{query}: {body}");
            assert_eq!(body["code"], "validation", "{list}?{query}: {body}");
            assert_eq!(body["fields"][0]["field"], field, "{list}?{query}: {body}");
        }
        let (status, body) = app.get(&format!("{list}?limit=1")).await;
        assert_eq!(status, StatusCode::OK, "{list}: {body}");
        assert_eq!(body["items"].as_array().unwrap().len(), 1, "{list}");
    }
}
