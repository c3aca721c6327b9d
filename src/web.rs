//! actix-web alongside agents: an `HttpServer` as a server hook, and the
//! health endpoints.

use std::fmt;
use std::io;

use actix_http::Request;
use actix_service::IntoServiceFactory;
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Response, Service, ServiceFactory};
use actix_web::{web, HttpResponse, HttpServer};
use serde::Serialize;

use crate::{registry, Phase, ServerContext};

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
        log::info!(target: "microagent::web", "server `{}` listening on {addr}", srv.name());
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

/// One agent in a health report.
#[derive(Debug, Serialize)]
struct AgentHealth {
    name: &'static str,
    state: &'static str,
}

/// The body of `/health/live` and `/health/ready`.
#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    agents: Vec<AgentHealth>,
}

fn state(phase: Phase) -> &'static str {
    match phase {
        Phase::Starting => "starting",
        Phase::Running => "running",
        Phase::Stopping => "stopping",
        Phase::Stopped => "stopped",
    }
}

/// The current System's agents, and whether they are all ready: running,
/// with the System not shutting down.
fn report() -> (bool, Vec<AgentHealth>) {
    match registry::current() {
        Some(agents) => {
            let statuses = agents.statuses(false);
            let ready = !agents.shutting_down()
                && !statuses.is_empty()
                && statuses.iter().all(|s| s.phase == Phase::Running);
            let list = statuses
                .into_iter()
                .map(|s| AgentHealth {
                    name: s.name,
                    state: state(s.phase),
                })
                .collect();
            (ready, list)
        }
        // Not run by `run` or a `Launcher`: no agents to speak of.
        None => (false, Vec::new()),
    }
}

async fn live() -> HttpResponse {
    let (_, agents) = report();
    HttpResponse::Ok().json(Health {
        status: "live",
        agents,
    })
}

async fn ready() -> HttpResponse {
    let (ready, agents) = report();
    if ready {
        HttpResponse::Ok().json(Health {
            status: "ready",
            agents,
        })
    } else {
        HttpResponse::ServiceUnavailable().json(Health {
            status: "unavailable",
            agents,
        })
    }
}

async fn info() -> HttpResponse {
    let agents = registry::current()
        .map(|agents| agents.infos())
        .unwrap_or_default();
    HttpResponse::Ok().json(agents)
}

/// The health service, to mount with `App::new().configure(microagent::web::health)`:
///
/// - `GET /health/live`: 200 while the process runs;
/// - `GET /health/ready`: 200 only between the end of every agent's
///   `post_start` hooks and the start of shutdown, 503 otherwise;
/// - `GET /health/info`: 200 with each agent's [`AgentInfo`](crate::AgentInfo)
///   (hooks, servers, periodic and cron tasks with their next due time).
///
/// `live` and `ready` answer `{"status": "...", "agents": [{"name": "...", "state": "running"}]}`;
/// all three cover the live agents of the System run by [`run`](crate::run)
/// or a [`Launcher`](crate::Launcher).
pub fn health(cfg: &mut web::ServiceConfig) {
    cfg.route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .route("/health/info", web::get().to(info));
}
