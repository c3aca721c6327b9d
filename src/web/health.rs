//! The health endpoints: liveness, readiness and self-description of the
//! agents of the current System.

use actix_web::{web, HttpResponse};
use serde::Serialize;

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
}

/// The current System's agents, and whether they are all ready: running,
/// with the System not shutting down.
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
            (agents.ready(), list)
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
