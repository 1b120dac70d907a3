//! The HTTP routes, in one table. [`table`] lists every endpoint once: its handler, who may call
//! it and which problems it answers with; its path, method and documentation come from the
//! handler's `#[utoipa::path]`. Mounting, the `Allow` header of 405 answers and the OpenAPI
//! paths (with their security and problem responses) all read the table, so a new endpoint is
//! one handler and one row here.

pub(crate) mod debugger;
pub(crate) mod documents;
pub(crate) mod erasures;
pub(crate) mod events;
pub(crate) mod feed;
pub(crate) mod ops;
pub(crate) mod schemas;

use actix_web::http::Method;
use actix_web::{web, FromRequest, Handler, HttpRequest, HttpResponse, Responder, Route};
use intake_domain::Scope;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;

use crate::auth::{EventsErase, EventsRead, EventsWrite, RequiredScope, SchemasRead, SchemasWrite};
use crate::problem::{ApiError, ProblemKind};

pub use ops::OpenApiJson;

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: no token is read.
    Public,
    /// A token with this scope; the handler takes the matching `Caller<…>`.
    Scope(Scope),
}

impl Access {
    /// A token with the scope `S`.
    fn scope<S: RequiredScope>() -> Self {
        Self::Scope(S::SCOPE)
    }
}

/// One method on one path.
pub struct Endpoint {
    /// The path pattern, as documented (`/v1/events/{event_id}`).
    pub path: String,
    /// The method, as documented.
    pub method: HttpMethod,
    /// Who may call it.
    pub access: Access,
    /// The problems it may answer with, beyond those its access implies (401, 403).
    pub problems: Vec<ProblemKind>,
    /// Its OpenAPI operation, from the handler's annotation.
    pub operation: fn() -> Operation,
    /// The tags of the annotation (utoipa keeps them apart from the operation).
    pub tags: Vec<&'static str>,
    /// Adds the schemas the operation refers to.
    pub schemas: fn(&mut Vec<(String, RefOr<Schema>)>),
    /// The handler's Rust name, to check the operation belongs to it.
    pub handler: &'static str,
    route: Route,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("path", &self.path)
            .field("method", &self.http_method())
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// The method as actix names it.
    pub fn http_method(&self) -> Method {
        actix_method(&self.method)
    }
}

fn actix_method(method: &HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Trace => Method::TRACE,
    }
}

/// The endpoints of `handler`, documented by `P` (the type `#[utoipa::path]` generates for it):
/// one per documented method. Its tags and schema references come through the traits that
/// utoipa's own `OpenApi` derive reads.
fn endpoint<P, F, Args>(handler: F, access: Access, problems: &[&[ProblemKind]]) -> Vec<Endpoint>
where
    P: utoipa::Path + utoipa::__dev::Tags<'static> + utoipa::__dev::SchemaReferences,
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    P::methods()
        .into_iter()
        .map(|method| Endpoint {
            path: P::path(),
            route: web::method(actix_method(&method)).to(handler.clone()),
            method,
            access,
            problems: problems.concat(),
            operation: P::operation,
            tags: P::tags(),
            schemas: P::schemas,
            handler: std::any::type_name::<F>(),
        })
        .collect()
}

/// What reading a request body can go wrong with.
const BODY: &[ProblemKind] = &[
    ProblemKind::INVALID_JSON,
    ProblemKind::INVALID_UTF8,
    ProblemKind::INVALID_BODY,
    ProblemKind::UNREADABLE_BODY,
    ProblemKind::REQUEST_TIMEOUT,
    ProblemKind::PAYLOAD_TOO_LARGE,
    ProblemKind::UNSUPPORTED_CONTENT_TYPE,
    ProblemKind::UNSUPPORTED_CONTENT_ENCODING,
];

/// Every endpoint. Order matters where patterns overlap: `/v1/events/batch` comes before
/// `/v1/events/{event_id}`.
pub fn table() -> Vec<Endpoint> {
    use debugger::*;
    use erasures::*;
    use events::*;
    use feed::*;
    use ops::*;
    use schemas::*;
    use ProblemKind as K;
    let unavailable = &[K::SERVICE_UNAVAILABLE][..];
    [
        endpoint::<__path_ingest, _, _>(
            ingest,
            Access::scope::<EventsWrite>(),
            &[
                BODY,
                &[
                    K::VALIDATION_FAILED,
                    K::SCHEMA_VIOLATION,
                    K::SCHEMA_CHECK_TOO_SLOW,
                    K::IDEMPOTENCY_KEY_REUSED,
                    K::RATE_LIMITED,
                    K::OVERLOADED,
                ],
                unavailable,
            ],
        ),
        endpoint::<__path_feed, _, _>(
            feed,
            Access::scope::<EventsRead>(),
            &[&[K::INVALID_QUERY], unavailable],
        ),
        endpoint::<__path_ingest_batch, _, _>(
            ingest_batch,
            Access::scope::<EventsWrite>(),
            &[
                BODY,
                &[K::INVALID_BATCH, K::VALIDATION_FAILED, K::RATE_LIMITED, K::OVERLOADED],
                unavailable,
            ],
        ),
        endpoint::<__path_get_event, _, _>(
            get_event,
            Access::scope::<EventsRead>(),
            &[&[K::NOT_FOUND], unavailable],
        ),
        endpoint::<__path_erase_event, _, _>(
            erase_event,
            Access::scope::<EventsErase>(),
            &[&[K::NOT_FOUND], unavailable],
        ),
        endpoint::<__path_create_erasure, _, _>(
            create_erasure,
            Access::scope::<EventsErase>(),
            &[BODY, &[K::INVALID_ERASURE, K::TOO_MANY_ERASURES], unavailable],
        ),
        endpoint::<__path_get_erasure, _, _>(
            get_erasure,
            Access::scope::<EventsErase>(),
            &[&[K::NOT_FOUND], unavailable],
        ),
        endpoint::<__path_list_schemas, _, _>(
            list_schemas,
            Access::scope::<SchemasRead>(),
            &[unavailable],
        ),
        endpoint::<__path_put_schema, _, _>(
            put_schema,
            Access::scope::<SchemasWrite>(),
            &[BODY, &[K::VALIDATION_FAILED, K::INVALID_SCHEMA], unavailable],
        ),
        endpoint::<__path_get_schema, _, _>(
            get_schema,
            Access::scope::<SchemasRead>(),
            &[&[K::NOT_FOUND], unavailable],
        ),
        endpoint::<__path_delete_schema, _, _>(
            delete_schema,
            Access::scope::<SchemasWrite>(),
            &[&[K::NOT_FOUND], unavailable],
        ),
        endpoint::<__path_get_schema_version, _, _>(
            get_schema_version,
            Access::scope::<SchemasRead>(),
            &[&[K::NOT_FOUND], unavailable],
        ),
        endpoint::<__path_debugger_stream, _, _>(
            debugger_stream,
            Access::scope::<EventsRead>(),
            &[unavailable, &[K::TOO_MANY_STREAMS, K::DEBUGGER_FULL]],
        ),
        endpoint::<__path_debugger_page, _, _>(debugger_page, Access::Public, &[]),
        endpoint::<__path_healthz, _, _>(healthz, Access::Public, &[]),
        endpoint::<__path_readyz, _, _>(
            readyz,
            Access::Public,
            &[&[K::MIGRATIONS_PENDING], unavailable],
        ),
        endpoint::<__path_metrics, _, _>(metrics, Access::Public, &[]),
        endpoint::<__path_openapi, _, _>(openapi, Access::Public, &[]),
        endpoint::<__path_troubleshooting, _, _>(troubleshooting, Access::Public, &[]),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The (path, method) pairs the server mounts.
pub fn mounted() -> Vec<(String, Method)> {
    table().into_iter().map(|e| (e.path.clone(), e.http_method())).collect()
}

/// Mounts every endpoint, with problem answers for unknown routes and wrong methods.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let mut paths: Vec<(String, Vec<(Method, Route)>)> = Vec::new();
    for endpoint in table() {
        let method = endpoint.http_method();
        match paths.iter_mut().find(|(p, _)| *p == endpoint.path) {
            Some((_, routes)) => routes.push((method, endpoint.route)),
            None => paths.push((endpoint.path, vec![(method, endpoint.route)])),
        }
    }
    for (path, routes) in paths {
        let mut allowed: Vec<Method> = routes.iter().map(|(m, _)| m.clone()).collect();
        allowed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        let mut resource = web::resource(path).default_service(web::to(move |req: HttpRequest| {
            let allowed = allowed.clone();
            async move {
                Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
                    method: req.method().clone(),
                    allowed,
                })
            }
        }));
        for (_, route) in routes {
            resource = resource.route(route);
        }
        cfg.service(resource);
    }
    cfg.default_service(web::to(not_found));
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("no route {} {}", req.method(), req.path())))
}
