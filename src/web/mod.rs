//! actix-web alongside agents: an `HttpServer` as a server hook ([`serve`]),
//! and the health endpoints ([`health`]).

use std::fmt;
use std::io;

use actix_http::Request;
use actix_service::IntoServiceFactory;
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Response, Service, ServiceFactory};
use actix_web::HttpServer;

use crate::server::ServerContext;

mod admin;
mod health;

pub use admin::{admin, MIN_TOKEN_LEN};
pub use health::health;

/// Runs an actix-web [`HttpServer`] as a server hook, wired to the agent's
/// lifecycle: it stops gracefully (finishing in-flight requests, accepting
/// no new connections, closing idle keep-alive connections) once its agent's
/// `pre_stop` hooks are done, and its own signal handling is off (the
/// [`Launcher`](crate::Launcher) owns the signals).
///
/// ```no_run
/// use microagent::prelude::*;
/// use actix_web::{web, App, HttpServer};
///
/// #[derive(Default, MicroAgent)]
/// struct Api {
///     bind: String,
/// }
///
/// #[microagent::hooks]
/// impl Api {
///     #[on(server)]
///     fn http(&self, srv: ServerContext<Self>) -> impl std::future::Future<Output = std::io::Result<()>> {
///         let bind = self.bind.clone();
///         async move {
///             let server = HttpServer::new(|| {
///                 App::new()
///                     .configure(microagent::web::health)
///                     .route("/", web::get().to(|| async { "hello" }))
///             })
///             .bind(bind)?;
///             microagent::web::serve(server, srv).await
///         }
///     }
/// }
/// ```
pub async fn serve<F, I, S, B, A>(
    server: HttpServer<F, I, S, B>,
    srv: ServerContext<A>,
) -> io::Result<()>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
    A: actix::Actor,
{
    for addr in server.addrs() {
        srv.publish_address(addr);
    }
    // `shutdown_signal` would stop the whole System ~300 ms after the
    // server; `ServerHandle::stop(true)` stops only the server.
    let running = server.disable_signals().run();
    let handle = running.handle();
    let shutdown = srv.shutdown();
    actix_rt::spawn(async move {
        shutdown.await;
        handle.stop(true).await;
    });
    running.await
}

/// An agent that serves the health endpoints ([`health`]) on its address:
/// what a configuration's `http` key starts beside the agents.
///
/// ```no_run
/// fn main() -> microagent::Exit {
///     microagent::Launcher::new()
///         .agent(microagent::web::HealthServer::new("127.0.0.1:8080"))
///         .run()
/// }
/// ```
#[derive(Debug, crate::MicroAgent)]
pub struct HealthServer {
    bind: String,
    admin: Option<AdminToken>,
}

/// The admin token, never shown (`Debug` says only that there is one).
#[derive(Clone)]
struct AdminToken(String);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl HealthServer {
    /// Serves on `bind` (`host:port`).
    pub fn new(bind: impl Into<String>) -> Self {
        HealthServer {
            bind: bind.into(),
            admin: None,
        }
    }

    /// Serves the [`admin`] endpoints too, for requests that carry `token`
    /// (at least [`MIN_TOKEN_LEN`] bytes).
    ///
    /// # Panics
    /// When `token` is shorter.
    pub fn admin(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        assert!(
            token.len() >= MIN_TOKEN_LEN,
            "microagent: an admin token has {MIN_TOKEN_LEN} bytes or more"
        );
        self.admin = Some(AdminToken(token));
        self
    }
}

#[crate::hooks]
impl HealthServer {
    #[on(server)]
    fn http(&self, srv: ServerContext<Self>) -> impl std::future::Future<Output = io::Result<()>> {
        let bind = self.bind.clone();
        let admin = self.admin.clone().map(|token| admin::admin(token.0));
        async move {
            let server = HttpServer::new(move || {
                let app = actix_web::App::new().configure(health);
                match &admin {
                    Some(admin) => app.configure(admin.clone()),
                    None => app,
                }
            })
            .bind(&bind)?;
            serve(server, srv).await
        }
    }
}

/// An agent that serves `GET /metrics` alone on its address (features
/// `web` and `metrics`): what a configuration's `[metrics] listen` starts,
/// for a group that exposes no health endpoints, or wants its metrics on
/// a port of their own.
///
/// ```no_run
/// fn main() -> microagent::Exit {
///     microagent::Launcher::new()
///         .agent(microagent::web::MetricsServer::new("0.0.0.0:9100"))
///         .run()
/// }
/// ```
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
#[derive(Debug, crate::MicroAgent)]
pub struct MetricsServer {
    bind: String,
}

#[cfg(feature = "metrics")]
impl MetricsServer {
    /// Serves on `bind` (`host:port`).
    pub fn new(bind: impl Into<String>) -> Self {
        MetricsServer { bind: bind.into() }
    }
}

#[cfg(feature = "metrics")]
#[crate::hooks]
impl MetricsServer {
    #[on(server)]
    fn http(&self, srv: ServerContext<Self>) -> impl std::future::Future<Output = io::Result<()>> {
        let bind = self.bind.clone();
        async move {
            let server = HttpServer::new(|| actix_web::App::new().configure(health::metrics_only))
                .workers(1)
                .bind(&bind)?;
            serve(server, srv).await
        }
    }
}
