//! The original microagent's hooks example, in Rust.
//!
//! `pre_start` logs "Called handler 1", `post_start` logs "Called handler 2"
//! and then stops the agent, `pre_stop` logs "Called handler 3". The process
//! exits 0 when every hook succeeded.
//!
//! Run it with `cargo run --example hooks`.

use std::process::ExitCode;

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
    fn handler_2(&mut self, ctx: &mut Context<Self>) {
        log::info!("Called handler 2");
        // No server yet: the agent ends its own run once it has started.
        ctx.stop();
    }

    #[on(pre_stop)]
    async fn handler_3(&mut self) {
        log::info!("Called handler 3");
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match microagent::run_agent(Agent) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
