//! The health endpoints: liveness, readiness and self-description of the
//! agents of the current System.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::bus::{self, BusInfo};
use crate::registry;

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
    bus: Option<BusInfo>,
}

/// The current System's agents, and whether they are all ready: running,
/// with the System not shutting down and its bus connected.
fn report() -> (bool, Vec<AgentHealth>) {
    match registry::current() {
        Some(agents) => {
            let list = agents
                .statuses(false)
                .into_iter()
                .map(|s| AgentHealth {
                    name: s.name,
                    state: s.phase.as_str(),
                })
                .collect();
            (
                agents.ready() && bus::connected() && crate::broker::connected(),
                list,
            )
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
        bus: bus::current_info(),
    })
}

async fn ready() -> HttpResponse {
    let (ready, agents) = report();
    if ready {
        HttpResponse::Ok().json(Health {
            status: "ready",
            agents,
            bus: bus::current_info(),
        })
    } else {
        HttpResponse::ServiceUnavailable().json(Health {
            status: "unavailable",
            agents,
            bus: bus::current_info(),
        })
    }
}

async fn info() -> HttpResponse {
    let agents = registry::current()
        .map(|agents| agents.infos())
        .unwrap_or_default();
    HttpResponse::Ok().json(agents)
}

/// `GET /metrics`: every metric in the Prometheus text format, sampled
/// now; 404 when the application installed a `metrics` recorder of its
/// own (its exporter serves them).
#[cfg(feature = "metrics")]
async fn metrics() -> HttpResponse {
    match crate::metrics::render().await {
        Some(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body(
                "the application installed a metrics recorder of its own; it exports the metrics\n",
            ),
    }
}

/// `GET /metrics` alone (the [`MetricsServer`](super::MetricsServer)).
#[cfg(feature = "metrics")]
pub(super) fn metrics_only(cfg: &mut web::ServiceConfig) {
    crate::metrics::prometheus();
    cfg.route("/metrics", web::get().to(metrics));
}

/// The health service, to mount with `App::new().configure(microagent::web::health)`:
///
/// - `GET /health/live`: 200 while the process runs;
/// - `GET /health/ready`: 200 only between the end of every agent's
///   `post_start` hooks and the start of shutdown, while the bus is
///   connected (a Redis bus reconnecting answers 503), 503 otherwise;
/// - `GET /health/info`: 200 with each agent's [`AgentInfo`](crate::AgentInfo)
///   (hooks, servers, periodic and cron tasks with their next due time).
///
/// `live` and `ready` answer `{"status": "...", "agents": [{"name": "...", "state": "running"}],
/// "bus": {"kind": "redis", "prefix": "PUBSUB", "url": "redis://127.0.0.1:6379", "connected": true, "bad_input": 0}}`
/// (the URL's password, if any, as `***`);
/// all three cover the live agents of the System run by [`run`](crate::run)
/// or a [`Launcher`](crate::Launcher).
///
/// With the `metrics` feature it also serves `GET /metrics`: the
/// [`metrics`](crate::metrics) in the Prometheus text format, from a
/// Prometheus recorder it installs when the application has not
/// installed a `metrics` recorder of its own (404 when it has).
pub fn health(cfg: &mut web::ServiceConfig) {
    cfg.route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .route("/health/info", web::get().to(info));
    #[cfg(feature = "metrics")]
    metrics_only(cfg);
}
