//! Pairing a `whatsapp` instance with its phone: the QR code (raw, PNG or SVG), a phone code instead, and logging
//! out.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use convene_core::{PairingCode, PhoneNumber};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::instances::{InstanceOut, parse_instance_id};
use crate::AppState;
use crate::auth::AccountKey;
use crate::error::{ApiError, ErrorBody, Result};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::qr;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_qr)).routes(routes!(request_pairing_code)).routes(routes!(logout))
}

#[derive(Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QrFormat {
    /// `{code, expires_at}`: the raw payload, to draw yourself.
    #[default]
    Json,
    Png,
    Svg,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QrQuery {
    /// `json` (default), `png` or `svg`.
    #[serde(default)]
    #[param(inline)]
    pub format: QrFormat,
}

/// The QR code to scan with WhatsApp > Linked devices > Link a device. It rotates about every 20 seconds until
/// scanned; fetch it again after `expires_at`. 409 `not_pairing` when the instance is not waiting for a scan.
#[utoipa::path(get, path = "/instances/{id}/qr", tag = "instances", operation_id = "v1.instance.qr",
    params(("id" = String, Path, description = "Instance id", example = "7103000001"), QrQuery),
    responses(
        (status = 200, description = "The QR code", body = PairingCode, example = json!({
            "code": "2@Xb9Q0xk2bVg7cC7n,bFzJ4Vm2x3lq+9qxw=,Q2h5cWq0q1c=,7yX9c5X2c0M=",
            "expires_at": "2026-11-23T21:40:20Z"
        })),
        (status = 200, description = "`?format=png`", content_type = "image/png"),
        (status = 200, description = "`?format=svg`", content_type = "image/svg+xml"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn get_qr(
    State(state): State<AppState>,
    key: AccountKey,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<QrQuery>,
) -> Result<Response> {
    let code = state.service.pairing_qr(key.instance(parse_instance_id(&id)?)?).await?;
    let unrenderable = |e: qr::QrError| ApiError::internal(anyhow::anyhow!(e));
    Ok(match query.format {
        QrFormat::Json => Json(code).into_response(),
        QrFormat::Png => {
            ([(header::CONTENT_TYPE, "image/png")], qr::png(&code.code).map_err(unrenderable)?).into_response()
        }
        QrFormat::Svg => {
            ([(header::CONTENT_TYPE, "image/svg+xml")], qr::svg(&code.code).map_err(unrenderable)?).into_response()
        }
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PairingCodeIn {
    /// The number of the phone that will link this instance, with its country code.
    #[schema(value_type = PhoneNumber, example = "+12015550142")]
    pub phone_number: String,
}

/// Pair by typing a code on the phone instead of scanning: WhatsApp > Linked devices > Link with phone number
/// instead. Needs the instance connected to WhatsApp and not yet paired.
#[utoipa::path(post, path = "/instances/{id}/pairing-code", tag = "instances", operation_id = "v1.instance.pairing_code",
    params(("id" = String, Path, description = "Instance id", example = "7103000001")),
    request_body(content = PairingCodeIn, example = json!({"phone_number": "+12015550142"})),
    responses(
        (status = 200, body = PairingCode, example = json!({"code": "R7KD-2QXM", "expires_at": "2026-11-23T21:43:00Z"})),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
async fn request_pairing_code(
    State(state): State<AppState>,
    key: AccountKey,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<PairingCodeIn>,
) -> Result<Json<PairingCode>> {
    Ok(Json(state.service.request_pairing_code(key.instance(parse_instance_id(&id)?)?, &input.phone_number).await?))
}

/// Unlink the number from this instance and delete its keys. The instance stays and starts a new pairing.
#[utoipa::path(post, path = "/instances/{id}/logout", tag = "instances", operation_id = "v1.instance.logout",
    params(("id" = String, Path, description = "Instance id", example = "7103000001")),
    responses((status = 200, body = InstanceOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn logout(
    State(state): State<AppState>,
    key: AccountKey,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<InstanceOut>> {
    let id = key.instance(parse_instance_id(&id)?)?;
    state.service.logout(id).await?;
    let (record, live) = state.service.instances().get(id).await?;
    Ok(Json(InstanceOut::load(&state.service, record, live).await?))
}
