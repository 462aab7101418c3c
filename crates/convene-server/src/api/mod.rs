//! The native API, `/v1`: one module per resource, each exporting `router()`.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

pub mod groups;
pub mod health;
pub mod instances;
pub mod jobs;
pub mod keys;
pub mod listed_groups;
pub mod page;
pub mod pairing;
pub mod responses;
pub mod sandbox;
pub mod system;
pub mod webhooks;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Convene",
        description = "Self-hosted WhatsApp group gateway: create and run WhatsApp groups by API, with an outcome \
                       for every participant. Every `/v1` call takes `Authorization: Bearer <API key>`. Errors are \
                       JSON `{code, detail, fields?}`. Changing calls take an optional `Idempotency-Key` header that \
                       makes them safe to retry.",
        license(name = "MIT")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "instances", description = "WhatsApp numbers: real ones (kind `whatsapp`, paired by QR code or phone code) and sandbox ones, and how they are doing (`/v1/health`)."),
        (name = "groups", description = "Groups, named by our uuid or by their WhatsApp id (`…@g.us`)."),
        (name = "jobs", description = "Queued, paced group creation over a pool of instances."),
        (name = "participants", description = "Adding, removing, promoting and demoting people, with an outcome each."),
        (name = "webhooks", description = "Signed, durable event delivery to your endpoints (Standard Webhooks), the delivery log, replays, and the event log. Every payload's schema is in this document's `webhooks` section."),
        (name = "keys", description = "The account's API keys: scoped to some instances, read-only, revoked. A key limited to some instances sees only them (anything else is 404) and nothing account-wide (403); a read-only key changes nothing (403)."),
        (name = "sandbox", description = "Scripting the built-in simulated WhatsApp network."),
        (name = "system", description = "Health and readiness."),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("api_key", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// Every documented route, with its OpenAPI description.
pub fn router() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .merge(instances::router())
        .merge(health::router())
        .merge(pairing::router())
        .merge(groups::router())
        .merge(jobs::router())
        .merge(webhooks::router())
        .merge(keys::router())
        .merge(sandbox::router());
    let mut router = OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/v1", v1).merge(system::router());
    crate::idempotency::document(router.get_openapi_mut());
    responses::document(router.get_openapi_mut());
    groups::document(router.get_openapi_mut());
    webhooks::document(router.get_openapi_mut());
    keys::document(router.get_openapi_mut());
    instances::document(router.get_openapi_mut());
    router
}

#[cfg(test)]
mod tests {
    use convene_core::group::plain_name;

    /// `convene_core::group::plain_name` as a pattern: no control characters, not all spaces (utoipa takes only a
    /// literal in `#[schema(pattern = …)]`, so each name field spells it; this test holds them to it).
    const NAME_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";

    #[test]
    fn every_name_and_subject_in_the_document_states_the_rule_the_service_applies() {
        let document = serde_json::to_value(super::router().into_openapi()).unwrap();
        let mut named = Vec::new();
        for (schema, body) in document["components"]["schemas"].as_object().unwrap() {
            for field in ["name", "subject"] {
                let property = &body["properties"][field];
                // The sandbox's people take any name, as WhatsApp's profiles do.
                if property.get("pattern").is_some() {
                    named.push(format!("{schema}.{field}"));
                    assert_eq!(property["pattern"], NAME_PATTERN, "{schema}.{field}: {property}");
                    assert_eq!((&property["minLength"], &property["maxLength"]), (&1.into(), &100.into()));
                }
            }
        }
        for expected in
            ["GroupIn.subject", "GroupPatch.subject", "QueuedGroupIn.subject", "InstanceIn.name", "KeyIn.name"]
        {
            assert!(named.iter().any(|n| n == expected), "{expected} not found in {named:?}");
        }

        let pattern = regex::Regex::new(NAME_PATTERN).unwrap();
        let samples = [
            "War room",
            " padded ",
            "é",
            "   ",
            "",
            "two\nlines",
            "tab\there",
            "\u{85}x",
            "x\u{3000}",
            "\u{3000}",
            "\u{feff}",
            "\u{200b}",
            "\u{7f}",
            "a\u{9f}b",
            "emoji 🎉",
        ];
        for sample in samples {
            assert_eq!(pattern.is_match(sample), plain_name(sample, 100).is_ok(), "{sample:?}");
        }
        assert!(
            plain_name(&"x".repeat(101), 100).is_err() && plain_name(&format!("x{}", " ".repeat(100)), 100).is_err()
        );
    }
}
