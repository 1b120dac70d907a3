//! The OpenAPI 3.1 document, built from the route table: each endpoint's operation comes from
//! its handler's annotation, its security from its declared access, and its problem responses
//! from the problem kinds it declares. Served at `/openapi.json`; `make openapi` writes it to
//! `docs/openapi.json`.

use std::collections::BTreeMap;

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::Ref;
use utoipa::{Modify, OpenApi};

use crate::body::Encoding;
use crate::problem::{FieldProblem, Problem, ProblemKind};
use crate::routes::{self, Access, Endpoint};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from `intake tokens create`; each operation names the scope it \
                         needs",
                    ))
                    .build(),
            ),
        );
    }
}

/// What the document holds besides its paths.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "intake — Event Intake API",
        description = "Validates JSON events and stores each exactly once per tenant and idempotency key."
    ),
    components(schemas(FieldProblem, Problem, Encoding)),
    modifiers(&BearerAuth),
    tags(
        (name = "events", description = "Ingest and read events"),
        (name = "erasure", description = "Erase events: one by id, or every event whose data holds a value (scope events:erase)"),
        (name = "operations", description = "Health, readiness, metrics and documents"),
    )
)]
struct ApiDoc;

/// The problems an endpoint may answer with: those it declares, plus 401 and 403 when it needs
/// a token.
fn problems_of(endpoint: &Endpoint) -> Vec<ProblemKind> {
    let mut kinds = endpoint.problems.clone();
    if let Access::Scope(_) = endpoint.access {
        kinds.extend([ProblemKind::UNAUTHORIZED, ProblemKind::FORBIDDEN]);
    }
    kinds
}

/// An endpoint's operation with its security and problem responses.
fn operation(endpoint: &Endpoint) -> utoipa::openapi::path::Operation {
    let mut operation = (endpoint.operation)();
    let tags = operation.tags.get_or_insert_with(Vec::new);
    tags.extend(endpoint.tags.iter().map(|t| t.to_string()));
    if let Access::Scope(scope) = endpoint.access {
        operation.security = Some(vec![SecurityRequirement::new("bearer", [scope.as_str()])]);
    }
    let mut by_status: BTreeMap<u16, Vec<ProblemKind>> = BTreeMap::new();
    for kind in problems_of(endpoint) {
        by_status.entry(kind.status).or_default().push(kind);
    }
    for (status, kinds) in by_status {
        let description = kinds
            .iter()
            .map(|k| format!("{} ({})", k.title, k.slug))
            .collect::<Vec<_>>()
            .join("; ");
        let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
        let response = ResponseBuilder::new()
            .description(description)
            .content("application/problem+json", content)
            .build();
        operation.responses.responses.insert(status.to_string(), response.into());
    }
    operation
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    let mut schemas = Vec::new();
    for endpoint in routes::table() {
        (endpoint.schemas)(&mut schemas);
        document.paths.add_path_operation(
            &endpoint.path,
            vec![endpoint.method.clone()],
            operation(&endpoint),
        );
    }
    let components = document.components.get_or_insert_with(Default::default);
    for (name, schema) in schemas {
        components.schemas.entry(name).or_insert(schema);
    }
    document
}

/// The document as pretty-printed JSON.
pub fn document_json() -> String {
    document().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
