//! An agent serving HTTP next to its lifecycle.
//!
//! Listens on `HTTP_ADDR` (default `127.0.0.1:8080`) and serves:
//! - `GET /`: a greeting;
//! - `GET /slow?ms=N`: answers after N milliseconds, to watch a graceful
//!   stop drain in-flight requests;
//! - `GET /health/live` and `GET /health/ready`.
//!
//! SIGTERM or Ctrl-C stops it gracefully: `/health/ready` turns 503 at once,
//! the `pre_stop` hook waits `HTTP_DRAIN_DELAY_MS` (default 0) so that load
//! balancers notice, then the server finishes its in-flight requests and the
//! process exits 0. A second signal exits at once.
//!
//! `SHUTDOWN_DEADLINE_MS` (default 30000) bounds the graceful stop.
//!
//! ```sh
//! cargo run --example http &   # the feature `web` (a default); no service
//! curl localhost:8080/ ; curl localhost:8080/health/ready
//! kill -TERM %1
//! ```

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use microagent::prelude::*;
use serde::Deserialize;

fn env_ms(name: &str, default: u64) -> Duration {
    let ms = std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Duration::from_millis(ms)
}

#[derive(Default, MicroAgent)]
#[microagent(name = "http")]
struct Http {
    bind: String,
    drain_delay: Duration,
}

#[derive(Deserialize)]
struct Slow {
    ms: u64,
}

async fn slow(query: web::Query<Slow>) -> String {
    println!("slow request: {} ms", query.ms);
    let _ = std::io::stdout().flush();
    actix_rt::time::sleep(Duration::from_millis(query.ms)).await;
    format!("slept {} ms\n", query.ms)
}

#[microagent::hooks]
impl Http {
    #[on(pre_stop)]
    async fn drain_delay(&mut self) {
        log::info!(
            "not ready any more; waiting {:?} before closing the listener",
            self.drain_delay
        );
        actix_rt::time::sleep(self.drain_delay).await;
    }

    #[on(server)]
    fn http(&self, srv: ServerContext<Self>) -> impl Future<Output = std::io::Result<()>> {
        let bind = self.bind.clone();
        async move {
            let server = HttpServer::new(|| {
                App::new()
                    .configure(microagent::web::health)
                    .route("/", web::get().to(|| async { "hello from microagent\n" }))
                    .route("/slow", web::get().to(slow))
            })
            .workers(2)
            .bind(&bind)?;
            for addr in server.addrs() {
                println!("listening on {addr}");
            }
            let _ = std::io::stdout().flush();
            microagent::web::serve(server, srv).await
        }
    }
}

fn main() -> microagent::Exit {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let agent = Http {
        bind: std::env::var("HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into()),
        drain_delay: env_ms("HTTP_DRAIN_DELAY_MS", 0),
    };
    microagent::Launcher::new()
        .agent(agent)
        .shutdown_deadline(env_ms("SHUTDOWN_DEADLINE_MS", 30_000))
        .run()
}
