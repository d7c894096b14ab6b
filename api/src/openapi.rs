//! The OpenAPI 3.1 description, generated from the handlers' annotations
//! (utoipa) plus one concrete start path per kind whose request body is the
//! kind's own input schema.

use longrun_shared::kinds::KindSpec;
use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "longrun",
        description = "Long-running operations with live progress. Errors are RFC 9457 problem details.",
        version = env!("CARGO_PKG_VERSION"),
    ),
    paths(
        routes::start_operation,
        routes::get_operation,
        routes::wait_operation,
        routes::list_events,
        routes::list_children,
        routes::list_operations,
        routes::cancel_operation,
        routes::delete_operation,
        routes::list_kinds,
        routes::healthz,
        routes::readyz,
        routes::metrics,
        routes::openapi_json,
    ),
    components(schemas(
        longrun_shared::model::Operation,
        longrun_shared::model::Event,
        longrun_shared::model::EventPage,
        longrun_shared::model::OperationPage,
        longrun_shared::problem::Problem,
        longrun_shared::kinds::KindSpec,
        routes::KindList,
        routes::Health,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "operations", description = "start, follow, cancel and delete operations"),
        (name = "kinds", description = "what can be started"),
        (name = "health", description = "probes, metrics and this description"),
    ),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The document as JSON, with a start path per kind.
pub fn document(kinds: &[KindSpec]) -> String {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    let generic = doc["paths"]["/v1/{module}/{operation}"]["post"].clone();
    if let Some(paths) = doc["paths"].as_object_mut() {
        for kind in kinds {
            let Some((module, operation)) = longrun_shared::kinds::split_kind(&kind.kind) else {
                continue;
            };
            let mut post = generic.clone();
            let mut schema = kind.input_schema.clone();
            if let Some(object) = schema.as_object_mut() {
                object.remove("$schema");
            }
            post["operationId"] = json!(format!("start_{module}_{operation}"));
            post["summary"] = json!(format!("Start a {} operation", kind.kind));
            post["description"] = json!(kind.description);
            if let Some(params) = post["parameters"].as_array_mut() {
                params.retain(|p| p["in"] != "path");
            }
            post["requestBody"]["content"]["application/json"]["schema"] = schema;
            post["requestBody"]["required"] = json!(false);
            paths.insert(format!("/v1/{module}/{operation}"), json!({ "post": post }));
        }
    }
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_a_path_per_kind() {
        let doc: Value =
            serde_json::from_str(&document(&longrun_shared::kinds::builtin())).expect("json");
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1"))
        );
        let sleep = &doc["paths"]["/v1/demo/sleep"]["post"];
        assert_eq!(
            sleep["requestBody"]["content"]["application/json"]["schema"]["properties"]["steps"]["maximum"],
            10_000
        );
        assert!(doc["paths"]["/v1/operations/{id}/wait"]["get"].is_object());
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }
}
