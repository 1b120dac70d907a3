//! The HTTP routes. Every mounted route is listed once, in [`table`]: mounting, the `Allow`
//! header of 405 answers and the OpenAPI coverage check all read it.

pub(crate) mod events;
pub(crate) mod ops;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse, Route};

use crate::problem::ApiError;

/// Every route: path, method and handler. Order matters where patterns overlap:
/// `/v1/events/batch` comes before `/v1/events/{event_id}`.
fn table() -> Vec<(&'static str, Method, Route)> {
    vec![
        ("/v1/events", Method::POST, web::post().to(events::ingest)),
        ("/v1/events", Method::GET, web::get().to(events::feed)),
        ("/v1/events/batch", Method::POST, web::post().to(events::ingest_batch)),
        ("/v1/events/{event_id}", Method::GET, web::get().to(events::get_event)),
        ("/healthz", Method::GET, web::get().to(ops::healthz)),
        ("/readyz", Method::GET, web::get().to(ops::readyz)),
        ("/metrics", Method::GET, web::get().to(ops::metrics)),
        ("/openapi.json", Method::GET, web::get().to(ops::openapi)),
        ("/docs/troubleshooting", Method::GET, web::get().to(ops::troubleshooting)),
    ]
}

/// The (path, method) pairs the server mounts.
pub fn mounted() -> Vec<(&'static str, Method)> {
    table().into_iter().map(|(path, method, _)| (path, method)).collect()
}

/// Mounts every route, with problem answers for unknown routes and wrong methods.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let mut paths: Vec<(&'static str, Vec<(Method, Route)>)> = Vec::new();
    for (path, method, route) in table() {
        match paths.iter_mut().find(|(p, _)| *p == path) {
            Some((_, routes)) => routes.push((method, route)),
            None => paths.push((path, vec![(method, route)])),
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
