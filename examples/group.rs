//! Three agents in one group: when one stops, they all stop gracefully.
//!
//! - `api` serves HTTP on `HTTP_ADDR` (default `127.0.0.1:8081`), with the
//!   health endpoints;
//! - `counter` counts ticks of an interval it starts in `post_start`;
//! - `clock` has a server that ends the whole service with
//!   `ServerInterrupt` after `GROUP_RUN_MS` (default 2000) milliseconds.
//!
//! Every agent's `pre_stop` hook runs, then the process exits 0.
//!
//! Run it with `cargo run --example group`.
//! It needs the feature `web` (a default) and no service.

use std::future::Future;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use microagent::prelude::*;

#[derive(Default, MicroAgent)]
#[microagent(name = "api")]
struct Api {
    bind: String,
}

#[microagent::hooks]
impl Api {
    #[on(pre_stop)]
    fn bye(&mut self) {
        log::info!("api: pre_stop");
    }

    #[on(server)]
    fn http(&self, srv: ServerContext<Self>) -> impl Future<Output = std::io::Result<()>> {
        let bind = self.bind.clone();
        async move {
            let server = HttpServer::new(|| {
                App::new()
                    .configure(microagent::web::health)
                    .route("/", web::get().to(|| async { "hello from the group\n" }))
            })
            .workers(1)
            .bind(&bind)?;
            microagent::web::serve(server, srv).await
        }
    }
}

#[derive(Default, MicroAgent)]
#[microagent(name = "counter")]
struct Counter {
    ticks: u64,
}

#[microagent::hooks]
impl Counter {
    #[on(post_start)]
    fn tick(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_millis(100), |counter, _| counter.ticks += 1);
    }

    #[on(pre_stop)]
    fn bye(&mut self) {
        log::info!("counter: pre_stop after {} ticks", self.ticks);
    }
}

#[derive(Default, MicroAgent)]
#[microagent(name = "clock")]
struct Clock {
    run_for: Duration,
}

#[microagent::hooks]
impl Clock {
    #[on(pre_stop)]
    fn bye(&mut self) {
        log::info!("clock: pre_stop");
    }

    #[on(server)]
    fn alarm(&self) -> impl Future<Output = Result<(), ServerInterrupt>> {
        let run_for = self.run_for;
        async move {
            actix_rt::time::sleep(run_for).await;
            Err(ServerInterrupt::new("time is up"))
        }
    }
}

fn main() -> microagent::Exit {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let run_ms = std::env::var("GROUP_RUN_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    microagent::Launcher::new()
        .agent(Api {
            bind: std::env::var("HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8081".into()),
        })
        .agent(Counter::default())
        .agent(Clock {
            run_for: Duration::from_millis(run_ms),
        })
        .run()
}
