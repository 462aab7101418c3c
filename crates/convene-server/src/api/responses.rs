//! The answers many routes share, documented in one pass over the finished OpenAPI document rather than repeated
//! in every handler's annotation: 401 on every route that takes an API key; 400, 413, 415 and 422 on every route
//! with a JSON body (its extractor's refusals); 422 on every route with query parameters; the `Idempotency-Key`
//! refusals on every changing route; and what the network may answer (403, 429, 502, 503, 504) on every route that
//! talks to WhatsApp. Each is a shared response under `#/components/responses`. Every response also gets a
//! description, which OpenAPI requires and the annotations leave empty.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};

/// A shared error response: its status, component name and description.
struct Shared {
    status: &'static str,
    name: &'static str,
    description: &'static str,
}

const UNAUTHORIZED: Shared = Shared {
    status: "401",
    name: "Unauthorized",
    description: "No `Authorization: Bearer <API key>` header, or a key that is not valid (code `unauthorized`).",
};
const BAD_REQUEST: Shared = Shared {
    status: "400",
    name: "BadRequest",
    description: "The request cannot be read: a body that is not JSON (code `bad_request`), or an `Idempotency-Key` \
                  that is not 1 to 255 printable ASCII characters (code `invalid_idempotency_key`).",
};
const PAYLOAD_TOO_LARGE: Shared = Shared {
    status: "413",
    name: "PayloadTooLarge",
    description: "The body is larger than this route accepts (code `payload_too_large`).",
};
const UNSUPPORTED_MEDIA_TYPE: Shared = Shared {
    status: "415",
    name: "UnsupportedMediaType",
    description: "The body is not sent as `Content-Type: application/json` (code `unsupported_media_type`).",
};
const VALIDATION: Shared = Shared {
    status: "422",
    name: "Validation",
    description: "A field of the body, path or query is missing or invalid; `fields` names each (code `validation`). \
                  Also an `Idempotency-Key` reused for a different request (code `idempotency_key_reused`).",
};
const CONFLICT: Shared = Shared {
    status: "409",
    name: "Conflict",
    description: "The request conflicts with the current state, e.g. the instance left the group (code `conflict`, \
                  `not_pairing` or `not_supported_for_instance`), or a request with the same `Idempotency-Key` is still running \
                  (code `idempotency_key_in_progress`, with `Retry-After`).",
};
const FORBIDDEN: Shared = Shared {
    status: "403",
    name: "NotGroupAdmin",
    description: "WhatsApp refused because the instance is not an admin of the group (code `not_group_admin`).",
};
const RATE_LIMITED: Shared = Shared {
    status: "429",
    name: "RateLimited",
    description: "Pacing or WhatsApp's own rate limit: try again after `Retry-After` seconds (code `rate_limited` or \
                  `network_rate_limited`).",
};
const BAD_GATEWAY: Shared = Shared {
    status: "502",
    name: "NetworkError",
    description: "WhatsApp answered with an error (code `network_error`).",
};
const UNAVAILABLE: Shared = Shared {
    status: "503",
    name: "InstanceUnavailable",
    description: "The instance is not connected to WhatsApp, or the number is temporarily banned (code \
                  `instance_not_connected` or `temporarily_banned`).",
};
const GATEWAY_TIMEOUT: Shared = Shared {
    status: "504",
    name: "OutcomeUnknown",
    description: "WhatsApp did not answer in time and the outcome is unknown (code `outcome_unknown`); retrying with \
                  the same `Idempotency-Key` is safe.",
};

const ALL: [&Shared; 11] = [
    &UNAUTHORIZED,
    &BAD_REQUEST,
    &PAYLOAD_TOO_LARGE,
    &UNSUPPORTED_MEDIA_TYPE,
    &VALIDATION,
    &CONFLICT,
    &FORBIDDEN,
    &RATE_LIMITED,
    &BAD_GATEWAY,
    &UNAVAILABLE,
    &GATEWAY_TIMEOUT,
];

/// The tags of the routes that talk to WhatsApp through the instance's connector.
const NETWORK_TAGS: [&str; 2] = ["groups", "participants"];

/// Adds the shared responses to every operation they apply to, and a description to every response without one.
pub fn document(openapi: &mut OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    for shared in ALL {
        components.responses.insert(shared.name.into(), RefOr::T(error_response(shared)));
    }
    for (path, item) in &mut openapi.paths.paths {
        let native = path.starts_with("/v1/");
        let operations = [
            (&mut item.get, false),
            (&mut item.post, true),
            (&mut item.put, true),
            (&mut item.patch, true),
            (&mut item.delete, true),
        ];
        for (operation, changes) in operations {
            let Some(operation) = operation.as_mut() else { continue };
            let mut shared = Vec::new();
            if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                shared.push(&UNAUTHORIZED);
            }
            if takes_json(operation) {
                shared.extend([&BAD_REQUEST, &PAYLOAD_TOO_LARGE, &UNSUPPORTED_MEDIA_TYPE, &VALIDATION]);
            }
            if has_parameters(operation, ParameterIn::Query) || has_parameters(operation, ParameterIn::Path) {
                shared.push(&VALIDATION);
            }
            if native && changes {
                shared.extend([&BAD_REQUEST, &VALIDATION, &CONFLICT]);
            }
            let tags = operation.tags.as_deref().unwrap_or_default();
            if native && tags.iter().any(|t| NETWORK_TAGS.contains(&t.as_str())) {
                shared.extend([&FORBIDDEN, &CONFLICT, &RATE_LIMITED, &BAD_GATEWAY, &UNAVAILABLE, &GATEWAY_TIMEOUT]);
            }
            let responses = &mut operation.responses.responses;
            for s in shared {
                responses
                    .entry(s.status.into())
                    .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{}", s.name))));
            }
            for (status, response) in responses.iter_mut() {
                if let RefOr::T(response) = response
                    && response.description.is_empty()
                {
                    response.description = describe(status).into();
                }
            }
        }
    }
}

fn error_response(shared: &Shared) -> Response {
    let mut builder = ResponseBuilder::new()
        .description(shared.description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build());
    if matches!(shared.status, "409" | "429") {
        let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0));
        builder = builder.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(seconds))
                .description(Some("Seconds to wait before trying again."))
                .build(),
        );
    }
    builder.build()
}

fn takes_json(operation: &Operation) -> bool {
    matches!(&operation.request_body, Some(RefOr::T(body)) if body.content.contains_key("application/json"))
}

fn has_parameters(operation: &Operation, location: ParameterIn) -> bool {
    operation.parameters.iter().flatten().any(|p| matches!(p, RefOr::T(p) if p.parameter_in == location))
}

/// A description for a response the annotations left without one.
fn describe(status: &str) -> &'static str {
    match status {
        "200" => "Done.",
        "201" => "Created.",
        "202" => "Accepted: queued to run as pacing allows.",
        "204" => "Done; no content.",
        "400" => "The request cannot be read.",
        "403" => "WhatsApp refused because the instance is not an admin of the group.",
        "404" => "Not found: no such instance, group, job, endpoint or delivery (code `not_found`).",
        "409" => "The request conflicts with the current state (code `conflict`).",
        "413" => "The body is larger than this route accepts.",
        "415" => "The body's content type is not one this route takes.",
        "422" => "A field is missing or invalid; `fields` names each (code `validation`).",
        "503" => "Not available now.",
        _ => "See the error's `code` and `detail`.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shared_response_has_its_own_name_and_status() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert!(a.name != b.name && a.status != b.status, "{} and {}", a.name, b.name);
            }
        }
    }
}
