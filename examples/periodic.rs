//! Periodic and cron tasks in one agent.
//!
//! `refresh` runs every half second; `each_second` is a cron task on a
//! six-field expression (seconds first) that fires every second. After
//! three cron runs the agent stops itself and the process exits 0. The
//! agent's self-description, with each cron task's next due time, is
//! logged at start.
//!
//! Run it with `cargo run --example periodic`.
//! It needs no feature and no service.

use microagent::prelude::*;

#[derive(Default, MicroAgent)]
#[microagent(name = "periodic")]
struct Periodic {
    refreshed: u32,
    fired: u32,
}

#[microagent::hooks]
impl Periodic {
    #[on(post_start)]
    fn describe(&mut self) {
        match serde_json::to_string_pretty(&self.info()) {
            Ok(json) => log::info!("self-description:\n{json}"),
            Err(e) => log::warn!("cannot describe the agent: {e}"),
        }
    }

    #[periodic(period = 0.5, timeout = 0.25)]
    async fn refresh(&mut self) {
        self.refreshed += 1;
        log::info!("refresh #{}", self.refreshed);
    }

    #[cron("* * * * * *", timeout = 0.5)]
    fn each_second(&mut self, ctx: &mut Context<Self>) {
        self.fired += 1;
        log::info!(
            "cron #{} at {}",
            self.fired,
            chrono::Utc::now().format("%H:%M:%S")
        );
        if self.fired == 3 {
            ctx.stop();
        }
    }

    #[cron("0 */4 * * *", timeout = 30.0)]
    fn report(&mut self) {
        log::info!("four-hourly report");
    }

    #[on(pre_stop)]
    fn bye(&mut self) {
        log::info!(
            "stopping after {} refreshes and {} cron runs",
            self.refreshed,
            self.fired
        );
    }
}

fn main() -> microagent::Exit {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    microagent::Launcher::new().agent(Periodic::default()).run()
}
