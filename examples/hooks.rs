//! The original microagent's hooks example, in Rust.
//!
//! `pre_start` logs "Called handler 1", `post_start` logs "Called handler 2",
//! the server runs briefly and ends the service with
//! `ServerInterrupt::new("Exit")`, and `pre_stop` logs "Called handler 3".
//! The process exits 0.
//!
//! Run it with `cargo run --example hooks`.
//! It needs no feature and no service.

use std::future::Future;
use std::time::Duration;

use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[on(pre_start)]
    async fn handler_1(&mut self) {
        log::info!("Called handler 1");
    }

    #[on(post_start)]
    async fn handler_2(&mut self) {
        log::info!("Called handler 2");
    }

    #[on(pre_stop)]
    async fn handler_3(&mut self) {
        log::info!("Called handler 3");
    }

    #[on(server)]
    fn run_server(&self) -> impl Future<Output = Result<(), ServerInterrupt>> {
        async {
            log::info!("Server running");
            // A real server would serve here until told to stop.
            actix_rt::time::sleep(Duration::from_millis(100)).await;
            Err(ServerInterrupt::new("Exit")) // graceful exit
        }
    }
}

fn main() -> microagent::Exit {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    microagent::Launcher::new().agent(Agent).run()
}
