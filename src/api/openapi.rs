//! `/api/openapi.json`, generated from the handlers' annotations.

use axum::Json;
use utoipa::OpenApi;

use super::{agents, calls, health, keys, numbers, profiles, tenants, trunks, webrtc};

#[derive(OpenApi)]
#[openapi(
    info(title = "vca-sip", description = "Tenants, phone numbers, AI profiles and API keys of the vca-sip SIP edge."),
    paths(
        tenants::create, tenants::list, tenants::get, tenants::update,
        numbers::create, numbers::list, numbers::get, numbers::update, numbers::delete,
        profiles::create, profiles::list, profiles::get, profiles::update, profiles::delete,
        agents::create, agents::list, agents::get, agents::update, agents::delete,
        keys::create, keys::revoke,
        calls::list, calls::get, calls::recording, calls::delete_recording,
        trunks::platform_create, trunks::platform_list, trunks::platform_get,
        trunks::platform_update, trunks::platform_delete,
        trunks::tenant_create, trunks::tenant_list, trunks::tenant_get,
        trunks::tenant_update, trunks::tenant_delete,
        webrtc::offer, webrtc::hang_up, webrtc::trickle, webrtc::ice_candidate,
        webrtc::create_token,
        health::healthz, health::metrics,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[utoipa::path(get, path = "/api/openapi.json", responses((status = 200)))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
