//! The HTTP server: the actix application over the app data, and actix-web's `HttpServer`
//! assembled from its parts so that each accepted stream passes the connection layer first.

use std::net::TcpListener;
use std::time::Duration;

use actix_http::{HttpService, Protocol};
use actix_service::{map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::dev::{fn_service, AppConfig, Server};
use actix_web::middleware::from_fn;
use actix_web::App;

use crate::app_data::AppData;
use crate::connection::Explainer;
use crate::rate_limit;
use crate::request_context;
use crate::routes;

/// The actix application; also what handler tests build.
pub fn app(
    data: AppData,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(data.state)
        .app_data(data.auth)
        .app_data(data.metrics)
        .app_data(data.limits)
        .app_data(data.debugger)
        .app_data(data.openapi)
        .wrap(from_fn(rate_limit::middleware))
        .wrap(from_fn(request_context::middleware))
        .configure(routes::configure)
}

/// The send buffer of every connection, in bytes (128 KiB; the kernel keeps twice that).
const SEND_BUFFER: usize = 128 * 1024;

/// actix-web's `HttpServer`, assembled from its parts so that each accepted stream passes
/// through the connection layer (see [`crate::connection`]) first.
pub fn serve(
    listener: TcpListener,
    data: AppData,
    settings: &crate::settings::ServerSettings,
) -> anyhow::Result<Server> {
    let address = listener.local_addr()?;
    let head_timeout = Duration::from_millis(settings.client_request_timeout_ms);
    let explainer =
        Explainer::new(data.metrics.get_ref().clone(), settings.client_request_timeout_ms);
    // Signals are the application's to handle (SIGTERM and SIGINT alike drain gracefully).
    let mut builder = actix_server::Server::build()
        .shutdown_timeout(settings.shutdown_grace_secs)
        .disable_signals();
    if settings.workers > 0 {
        builder = builder.workers(settings.workers);
    }
    // Lets idle keep-alive connections close as soon as a graceful shutdown starts.
    let shutdown = builder.graceful_shutdown_signal();
    let builder = builder.listen("intake", listener, move || {
        let explainer = explainer.clone();
        let shutdown = shutdown.clone();
        let data = data.clone();
        let http = HttpService::build()
            .client_request_timeout(head_timeout)
            // As HttpServer does: after an early answer (a 413 before the body, say), keep
            // reading for a second so the client sees the answer rather than a reset.
            .client_disconnect_timeout(Duration::from_secs(1))
            .graceful_shutdown_signal(move || {
                let shutdown = shutdown.clone();
                async move { shutdown.notified().await }
            })
            .local_addr(address)
            .finish(map_config(
                app(data).into_factory().map_err(|err| err.error_response()),
                // The host and address in it only serve URL generation, which intake does not use.
                |_| AppConfig::default(),
            ));
        fn_service(move |io: actix_web::rt::net::TcpStream| {
            let _ = io.set_nodelay(true);
            // A fixed send buffer (the kernel doubles it): a client that stops reading, such as
            // a live-debugger stream left open and unread, pins at most this much kernel memory,
            // not the megabytes autotuning would grow it to (2,000 such streams filled a host's
            // whole TCP memory).
            let _ = socket2::SockRef::from(&io).set_send_buffer_size(SEND_BUFFER);
            let peer = io.peer_addr().ok();
            let io = explainer.guard(io);
            async move { Ok::<_, actix_http::error::DispatchError>((io, Protocol::Http1, peer)) }
        })
        .and_then(http)
    })?;
    Ok(builder.run())
}
