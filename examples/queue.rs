//! A producer and a consumer over a work queue: `Shop` sends three mails,
//! `Mailer` sends them, and the one addressed to `nobody@` fails every
//! attempt and ends in the dead-letter queue. Once all three are settled,
//! `Shop` prints the dead letters and ends the service (exit 0).
//!
//! Run it with `cargo run --example queue` (the in-process broker), on
//! Redis: `REDIS_URL=redis://127.0.0.1:6379 cargo run --features redis --example queue`, or
//! on RabbitMQ: `AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run --features amqp
//! --example queue`, or on NATS JetStream: `NATS_URL=nats://127.0.0.1:4222 cargo run
//! --features nats --example queue`, or on Kafka: `KAFKA_URL=kafka://127.0.0.1:9092
//! cargo run --features kafka --example queue` (`QUEUE_NAMESPACE` puts a prefix
//! before its queue names).

use std::error::Error;
use std::future::Future;
use std::time::Duration;

use microagent::broker::{Broker, BrokerConfig, BrokerError, Queue};
use microagent::prelude::*;
use serde::{Deserialize, Serialize};

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "mailer")]
struct Mail {
    to: String,
    text: String,
}

#[derive(Debug, thiserror::Error)]
#[error("no such mailbox: {0}")]
struct NoMailbox(String);

#[derive(Default, MicroAgent)]
struct Mailer;

#[microagent::hooks]
impl Mailer {
    /// Three attempts, 50 ms apart at first, then the dead letters.
    #[consumer(Mail, attempts = 3, backoff = 0.05)]
    async fn send_mail(&mut self, mail: Mail) -> Result<(), NoMailbox> {
        if mail.to.starts_with("nobody@") {
            return Err(NoMailbox(mail.to));
        }
        println!("mailer: sent {:?} to {}", mail.text, mail.to);
        Ok(())
    }
}

#[derive(Default, MicroAgent)]
struct Shop;

#[microagent::hooks]
impl Shop {
    /// Sends the mails, waits until they are settled, prints the dead
    /// letters and ends the service.
    #[on(server)]
    fn orders(&self) -> impl Future<Output = Result<(), BoxError>> {
        async {
            let broker = Broker::current();
            // Dead letters stay in Redis between runs: show this run's only.
            let before = broker.dead_letters(Mail::NAME).await?.len();
            for to in ["ann@example.com", "nobody@example.com", "bob@example.com"] {
                let text = format!("your order, {to}");
                broker
                    .send(Mail {
                        to: to.into(),
                        text,
                    })
                    .await?;
            }
            // Settled: the queue is empty and the failing mail is dead.
            loop {
                let left = broker.length(Mail::NAME).await?;
                let dead = broker.dead_letters(Mail::NAME).await?;
                if left == 0 && dead.len() > before {
                    for letter in &dead[before..] {
                        println!(
                            "dead letter after {} attempts: {} ({})",
                            letter.attempts, letter.message, letter.reason
                        );
                    }
                    break;
                }
                actix_rt::time::sleep(Duration::from_millis(20)).await;
            }
            Err(BoxError::from(ServerInterrupt::new(
                "every mail is settled",
            )))
        }
    }
}

/// Kafka when `KAFKA_URL` is set, else RabbitMQ when `AMQP_URL` is, else
/// NATS JetStream when `NATS_URL` is, else Redis when `REDIS_URL` is, else
/// the in-process broker.
fn broker() -> Result<BrokerConfig, BrokerError> {
    let namespace = std::env::var("QUEUE_NAMESPACE").unwrap_or_default();
    let url = ["KAFKA_URL", "AMQP_URL", "NATS_URL", "REDIS_URL"]
        .into_iter()
        .find_map(|variable| std::env::var(variable).ok());
    let config = match url {
        Some(url) => BrokerConfig::from_url(&url)?,
        None => return Ok(BrokerConfig::in_process()),
    };
    Ok(config.namespace(&namespace))
}

fn main() -> microagent::Exit {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        // lapin's `tracing` spans, as log lines: its I/O thread's name at
        // ERROR level, once per connection (docs/broker.md).
        .filter_module("tracing::span", log::LevelFilter::Off)
        .init();
    let broker = match broker() {
        Ok(broker) => broker,
        Err(e) => {
            log::error!("{e}");
            return microagent::Exit::BrokerFailed;
        }
    };
    log::info!("broker: {broker:?}");
    microagent::Launcher::new()
        .broker(broker)
        .agent(Mailer)
        .agent(Shop)
        .run()
}
