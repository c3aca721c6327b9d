//! Two agents talking over the signal bus: `Users` sends `user_created`,
//! which `Stock` receives, then calls `get_stock`, an RPC that `Stock`
//! answers. Once the exchange is done `Users` ends the service and the
//! process exits 0.
//!
//! Run it with `cargo run --example signals` (the in-process bus), or on
//! Redis: `REDIS_URL=redis://127.0.0.1:6379 cargo run --features redis --example signals`,
//! or on NATS: `NATS_URL=nats://127.0.0.1:4222 cargo run --features nats --example signals`
//! (`BUS_PREFIX` sets the channel prefix, `PUBSUB` by default).

use std::error::Error;
use std::future::Future;
use std::time::Duration;

use microagent::bus::{Bus, BusConfig, BusError, Signal};
use microagent::prelude::*;
use serde::{Deserialize, Serialize};

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Signal, Serialize, Deserialize)]
struct UserCreated {
    user_id: u64,
}

#[derive(Signal, Serialize, Deserialize)]
struct GetStock {
    item: String,
}

#[derive(Default, MicroAgent)]
struct Stock {
    apples: u32,
}

#[microagent::hooks]
impl Stock {
    #[receiver(UserCreated)]
    fn welcome(&mut self, signal: UserCreated, sender: String) {
        println!("stock: user_created {} from {sender}", signal.user_id);
    }

    #[receiver(GetStock, timeout = 5.0)]
    async fn stock(&mut self, signal: GetStock) -> u32 {
        match signal.item.as_str() {
            "apple" => self.apples,
            _ => 0,
        }
    }
}

#[derive(Default, MicroAgent)]
struct Users;

#[microagent::hooks]
impl Users {
    /// Calls the RPC, sends the signal, then ends the service (a bus error
    /// fails the server instead: exit code 4).
    #[on(server)]
    fn exchange(&self) -> impl Future<Output = Result<(), BoxError>> {
        async {
            let bus = Bus::current();
            // The agents start on their own threads: ask until `Stock` is up.
            let answers = loop {
                let ask = GetStock {
                    item: "apple".into(),
                };
                match bus.call("users", ask, Duration::from_millis(500)).await {
                    Ok(answers) => break answers,
                    Err(BusError::NoAnswer { asked: 0, .. }) => {
                        actix_rt::time::sleep(Duration::from_millis(20)).await
                    }
                    Err(other) => return Err(BoxError::from(other)),
                }
            };
            bus.send("users", UserCreated { user_id: 42 }).await?;
            for (responder, answer) in answers.iter() {
                println!("users: {} answered {answer} apples", responder);
            }
            // The signal is delivered; give the receiver a moment to print.
            actix_rt::time::sleep(Duration::from_millis(100)).await;
            println!("users: exchange done");
            Err(BoxError::from(ServerInterrupt::new("exchange done")))
        }
    }

    #[on(pre_stop)]
    fn bye(&mut self) {
        log::info!("users: stopping");
    }
}

/// The in-process bus, or NATS when `NATS_URL` is set, else Redis when
/// `REDIS_URL` is.
fn bus() -> Result<BusConfig, BusError> {
    let url = std::env::var("NATS_URL").or_else(|_| std::env::var("REDIS_URL"));
    let Ok(url) = url else {
        return Ok(BusConfig::in_process());
    };
    let config = BusConfig::from_url(&url)?;
    match std::env::var("BUS_PREFIX") {
        Ok(prefix) => config.prefix(&prefix),
        Err(_) => Ok(config),
    }
}

fn main() -> microagent::Exit {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let bus = match bus() {
        Ok(bus) => bus,
        Err(e) => {
            log::error!("{e}");
            return microagent::Exit::BusFailed;
        }
    };
    log::info!("bus: {bus:?}");
    microagent::Launcher::new()
        .bus(bus)
        .agent(Stock { apples: 12 })
        .agent(Users)
        .run()
}
