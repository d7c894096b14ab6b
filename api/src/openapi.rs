//! The OpenAPI 3.1 description, generated from the handlers' annotations
//! (utoipa) plus one concrete start path per kind whose request body is the
//! kind's own input schema. Every 4xx/5xx response is declared once here as
//! `application/problem+json` with the `Problem` schema (and `Retry-After`
//! on 429/503, `WWW-Authenticate` on 401), so the handlers only list which
//! statuses they answer.

use longrun_shared::kinds::KindSpec;
use longrun_shared::problem::PROBLEM_JSON;
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
        routes::start::start_operation,
        routes::read::get_operation,
        routes::wait::wait_operation,
        routes::read::list_events,
        routes::read::list_children,
        routes::list::list_operations,
        routes::manage::cancel_operation,
        routes::manage::delete_operation,
        routes::meta::list_kinds,
        routes::meta::healthz,
        routes::meta::readyz,
        routes::meta::metrics,
        routes::meta::openapi_json,
    ),
    components(schemas(
        longrun_shared::model::Operation,
        longrun_shared::model::Event,
        longrun_shared::model::EventPage,
        longrun_shared::model::OperationPage,
        longrun_shared::problem::Problem,
        longrun_shared::kinds::KindSpec,
        longrun_shared::kinds::BackoffKind,
        longrun_shared::kinds::FailurePolicy,
        longrun_shared::model::Status,
        routes::meta::KindList,
        routes::meta::Health,
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
    declare_problems(&mut doc);
    add_kind_paths(&mut doc, kinds);
    doc.to_string()
}

/// Gives every error response the problem media type and schema, and the
/// headers the api sends with it.
fn declare_problems(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    let operations = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut());
    for operation in operations {
        let Some(responses) = operation["responses"].as_object_mut() else {
            continue;
        };
        for (status, response) in responses.iter_mut() {
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            response["content"] = json!({
                PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
            });
            if response["description"].as_str().is_none_or(str::is_empty) {
                response["description"] = json!(default_description(status));
            }
            let header = match status.as_str() {
                "429" | "503" => Some(("Retry-After", "seconds to wait before retrying")),
                "401" => Some(("WWW-Authenticate", "`Bearer`")),
                _ => None,
            };
            if let Some((name, description)) = header {
                response["headers"][name] = json!({
                    "description": description,
                    "schema": {"type": if name == "Retry-After" { "integer" } else { "string" }},
                });
            }
        }
    }
}

fn default_description(status: &str) -> &'static str {
    match status {
        "400" => "bad request (query, header or JSON)",
        "401" => "missing or refused bearer token",
        "404" => "no such operation (or not the caller's)",
        "405" => "method not allowed",
        "409" => "conflict with the operation's state",
        "413" => "body larger than the limit",
        "415" => "body is not application/json",
        "422" => "input does not match the kind's schema",
        "429" => "rate limited",
        "503" => "Redis unreachable; retry after Retry-After",
        _ => "error",
    }
}

/// Adds `POST /v1/{module}/{operation}` for each kind, with the kind's own
/// input schema as the request body.
fn add_kind_paths(doc: &mut Value, kinds: &[KindSpec]) {
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
        let not_found = &doc["paths"]["/v1/operations/{id}"]["get"]["responses"]["404"];
        assert_eq!(
            not_found["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/Problem"
        );
        let unavailable = &sleep["responses"]["503"];
        assert!(unavailable["headers"]["Retry-After"].is_object());
        assert!(doc["components"]["schemas"]["FailurePolicy"].is_object());
    }
}
