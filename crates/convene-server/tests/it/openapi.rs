use reqwest::StatusCode;

use crate::helpers::spawn_app;

/// `openapi.json` in the repository is what the code generates; regenerate with
/// `cargo run -- openapi --out openapi.json`.
#[test]
fn the_committed_openapi_document_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json");
    let committed = std::fs::read_to_string(path).expect("openapi.json is committed at the repository root");
    let generated = convene_server::openapi_json();
    assert!(
        committed == generated,
        "openapi.json is out of date: run `cargo run -- openapi --out openapi.json` and commit the result"
    );
}

#[test]
fn every_operation_is_documented_with_an_id_and_responses() {
    let spec: serde_json::Value = serde_json::from_str(&convene_server::openapi_json()).unwrap();
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "{:?}", paths.keys());
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            assert!(op["operationId"].is_string(), "{method} {path}");
            assert!(op["description"].is_string() || op["summary"].is_string(), "{method} {path} has no docs");
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}");
        }
    }
}

#[tokio::test]
async fn the_docs_page_and_the_spec_are_served_without_the_internet() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let served: serde_json::Value = res.json().await.unwrap();
    assert_eq!(served["info"]["title"], "Convene");

    let res = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(html.contains("swagger-ui"));
    // Every script and stylesheet the page names is served by us: no absolute http(s) URLs.
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            let target = part.split('"').next().unwrap();
            assert!(!target.starts_with("http") && !target.starts_with("//"), "loads {target} from elsewhere");
            let res =
                app.client.get(app.url(&format!("/docs/{}", target.trim_start_matches("./")))).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{target}");
        }
    }
    let init = app.client.get(app.url("/docs/swagger-initializer.js")).send().await.unwrap().text().await.unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
    assert!(!init.contains("https://"), "{init}");
    assert!(init.contains("\"validatorUrl\": \"none\"") || init.contains("\"validatorUrl\":\"none\""), "{init}");
}
