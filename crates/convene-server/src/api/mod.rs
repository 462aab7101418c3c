//! The native API, `/v1`: one module per resource, each exporting `router()`.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

pub mod groups;
pub mod instances;
pub mod jobs;
pub mod keys;
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
        (name = "instances", description = "WhatsApp numbers: real ones (kind `whatsapp`, paired by QR code or phone code) and sandbox ones."),
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
        .merge(pairing::router())
        .merge(groups::router())
        .merge(jobs::router())
        .merge(webhooks::router())
        .merge(keys::router())
        .merge(sandbox::router());
    let mut router = OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/v1", v1).merge(system::router());
    crate::idempotency::document(router.get_openapi_mut());
    responses::document(router.get_openapi_mut());
    webhooks::document(router.get_openapi_mut());
    keys::document(router.get_openapi_mut());
    router
}
