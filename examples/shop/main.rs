//! A small shop from three agents, deployed by configuration:
//!
//! - `api`: HTTP. `POST /orders` with `{"item", "quantity", "email"}` asks
//!   the stock over RPC, puts the confirmation mail on the `shop_mail`
//!   queue, announces `order_placed`, and answers `201 {"order": id}`
//!   (`409` when the stock is short). `GET /mail/dead` lists the mails that
//!   could not be sent. Health endpoints under `/health/`.
//! - `stock`: answers `stock_level` (an RPC) and takes the ordered
//!   quantity off when `order_placed` arrives.
//! - `mailer`: consumes `shop_mail`; an address without `@` fails every
//!   attempt and ends in the dead letters.
//!
//! Three ways to run it (see the README):
//!
//! 1. `cargo run --example shop`: every agent in one process, in-process
//!    bus and broker;
//! 2. `cargo run --features redis --example shop -- --config
//!    examples/shop/redis.toml`: the same on Redis;
//! 3. `cargo run --features redis --example shop -- --config
//!    examples/shop/back.toml` and, beside it, `cargo run --features redis
//!    --example shop -- --config examples/shop/front.toml`: the HTTP agent
//!    in one process, the others in another, sharing Redis.
//!
//! Features: `web` and `config` (the defaults), and `redis` for 2 and 3;
//! services: a Redis at `127.0.0.1:6379` for 2 and 3.
//!
//! A copy of it in a crate of its own needs these dependencies:
//!
//! ```toml
//! [dependencies]
//! microagent = { version = "0.1", features = ["redis"] }
//! actix-web = { version = "4", default-features = false, features = ["macros"] }
//! actix-rt = "2"
//! serde = { version = "1", features = ["derive"] }
//! serde_json = "1"
//! thiserror = "2"
//! log = "0.4"
//!
//! [dev-dependencies]
//! microagent = { version = "0.1", features = ["redis", "testkit"] }
//! ```
//!
//! Its tests (at the end of this file, `cargo test --all-features
//! --example shop`) drive the agents with the test kit, in-process and,
//! with `REDIS_URL` set, on Redis.
//!
//! Then: `curl -si -X POST localhost:8080/orders -H 'content-type:
//! application/json' -d '{"item": "apple", "quantity": 2, "email":
//! "ann@example.com"}'`.

use std::collections::BTreeMap;
use std::error::Error;
use std::future::Future;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use microagent::broker::{Broker, Queue};
use microagent::bus::{Bus, Signal};
use microagent::config::Agents;
use microagent::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// RPC: how many of `item` are left.
#[derive(Signal, Serialize, Deserialize)]
struct StockLevel {
    item: String,
}

/// An order was accepted.
#[derive(Signal, Serialize, Deserialize)]
struct OrderPlaced {
    order: String,
    item: String,
    quantity: u32,
}

/// A confirmation mail to send.
#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "shop_mail")]
struct Mail {
    order: String,
    to: String,
    item: String,
    quantity: u32,
}

/// `POST /orders`'s body.
#[derive(Deserialize)]
struct NewOrder {
    item: String,
    quantity: u32,
    email: String,
}

/// `[agent.api]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ApiSettings {
    /// Where the HTTP server listens.
    bind: String,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            bind: "127.0.0.1:8080".into(),
        }
    }
}

#[derive(MicroAgent)]
struct Api {
    settings: ApiSettings,
}

#[microagent::hooks]
impl Api {
    #[on(server)]
    fn http(&self, srv: ServerContext<Self>) -> impl Future<Output = std::io::Result<()>> {
        let bind = self.settings.bind.clone();
        async move {
            let server = HttpServer::new(|| {
                App::new()
                    .configure(microagent::web::health)
                    .route("/orders", web::post().to(place))
                    .route("/mail/dead", web::get().to(dead_mail))
                    .route("/mail/dead/requeue", web::post().to(requeue_mail))
            })
            .workers(2)
            .bind(&bind)?;
            println!("api: listening on http://{bind}");
            microagent::web::serve(server, srv).await
        }
    }
}

/// `POST /orders`.
async fn place(order: web::Json<NewOrder>) -> HttpResponse {
    let NewOrder {
        item,
        quantity,
        email,
    } = order.into_inner();
    match accept(&item, quantity, email).await {
        Ok(Ok(id)) => HttpResponse::Created().json(json!({ "order": id })),
        Ok(Err(left)) => {
            HttpResponse::Conflict().json(json!({ "error": format!("only {left} {item} left") }))
        }
        Err(e) => {
            log::warn!("api: order of {item} refused: {e}");
            HttpResponse::ServiceUnavailable().json(json!({ "error": e.to_string() }))
        }
    }
}

/// Checks the stock, queues the mail, announces the order: its id, or how
/// many are left when that is too few.
async fn accept(
    item: &str,
    quantity: u32,
    email: String,
) -> Result<Result<String, u64>, Box<dyn Error>> {
    let bus = Bus::current();
    let ask = StockLevel { item: item.into() };
    let answers = bus.call("api", ask, Duration::from_secs(2)).await?;
    let left: u64 = answers.iter().filter_map(|(_, n)| n.as_u64()).sum();
    if left < u64::from(quantity) {
        return Ok(Err(left));
    }
    let order = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let mail = Mail {
        order: order.clone(),
        to: email,
        item: item.into(),
        quantity,
    };
    // Once the broker has the mail it is not lost, whatever stops.
    Broker::current().send(mail).await?;
    let placed = OrderPlaced {
        order: order.clone(),
        item: item.into(),
        quantity,
    };
    bus.send("api", placed).await?;
    Ok(Ok(order))
}

/// `GET /mail/dead`.
async fn dead_mail() -> HttpResponse {
    match Broker::current().dead_letters(Mail::NAME).await {
        Ok(letters) => HttpResponse::Ok().json(
            letters
                .iter()
                .map(|l| json!({ "mail": l.message, "reason": l.reason, "attempts": l.attempts }))
                .collect::<Vec<_>>(),
        ),
        Err(e) => HttpResponse::ServiceUnavailable().json(json!({ "error": e.to_string() })),
    }
}

/// `POST /mail/dead/requeue`: once the mail server is fixed, the mails
/// that could not be sent are tried again.
async fn requeue_mail() -> HttpResponse {
    match Broker::current().requeue_dead_letters(Mail::NAME).await {
        Ok(count) => HttpResponse::Ok().json(json!({ "requeued": count })),
        Err(e) => HttpResponse::ServiceUnavailable().json(json!({ "error": e.to_string() })),
    }
}

/// `[agent.stock]`: what is in stock at start.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct StockSettings {
    items: BTreeMap<String, u64>,
}

impl Default for StockSettings {
    fn default() -> Self {
        StockSettings {
            items: [("apple".to_owned(), 100), ("pear".to_owned(), 10)].into(),
        }
    }
}

#[derive(MicroAgent)]
struct Stock {
    items: BTreeMap<String, u64>,
}

#[microagent::hooks]
impl Stock {
    #[receiver(StockLevel)]
    fn level(&mut self, ask: StockLevel) -> u64 {
        self.items.get(&ask.item).copied().unwrap_or(0)
    }

    #[receiver(OrderPlaced)]
    fn reserve(&mut self, placed: OrderPlaced) {
        let left = self.items.entry(placed.item.clone()).or_default();
        *left = left.saturating_sub(u64::from(placed.quantity));
        println!(
            "stock: order {} took {} {}, {left} left",
            placed.order, placed.quantity, placed.item
        );
    }
}

/// `[agent.mailer]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct MailerSettings {
    sender: String,
    /// Seconds a mail takes to send (a slow mail server).
    pause: f64,
}

impl Default for MailerSettings {
    fn default() -> Self {
        MailerSettings {
            sender: "shop@example.com".into(),
            pause: 0.0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no mailbox at `{0}`")]
struct NoMailbox(String);

#[derive(Default, MicroAgent)]
struct Mailer {
    settings: MailerSettings,
}

#[microagent::hooks]
impl Mailer {
    #[consumer(Mail, attempts = 2, backoff = 0.05)]
    async fn send(&mut self, mail: Mail) -> Result<(), NoMailbox> {
        let pause = Duration::try_from_secs_f64(self.settings.pause).unwrap_or_default();
        actix_rt::time::sleep(pause).await;
        if !mail.to.contains('@') {
            return Err(NoMailbox(mail.to));
        }
        println!(
            "mailer: order {} ({} {}) mailed to {} from {}",
            mail.order, mail.quantity, mail.item, mail.to, self.settings.sender
        );
        Ok(())
    }
}

fn main() -> microagent::Exit {
    microagent::deploy(
        Agents::new()
            .agent_with("api", |settings| Api { settings })
            .agent_with("stock", |s: StockSettings| Stock { items: s.items })
            .agent_with("mailer", |settings| Mailer { settings }),
    )
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    use super::*;
    use microagent::broker::BrokerConfig;
    use microagent::bus::BusConfig;
    use microagent::testkit::TestKit;

    fn mail(to: &str) -> Mail {
        Mail {
            order: "o-1".into(),
            item: "apple".into(),
            quantity: 2,
            to: to.into(),
        }
    }

    /// The mailer and the stock, on the kit's bus and broker: a mail to a
    /// bad address is dead-lettered after its two attempts, requeued by an
    /// operator, tried again; the stock answers and reserves.
    fn the_mailer_and_the_stock(kit: TestKit) {
        kit.run(|kit| async move {
            let mailer = kit.start(Mailer::default());
            let stock = kit.start(Stock {
                items: [("apple".to_owned(), 5)].into(),
            });
            assert!(mailer.started().await && stock.started().await);
            assert!(kit.consume(mail("ann@example.com")).await.acked());
            let fate = kit.consume(mail("bob")).await;
            assert_eq!(fate.dead_lettered(), Some("no mailbox at `bob`"));
            assert_eq!(fate.attempts(), 2);
            // The operator's requeue (`POST /mail/dead/requeue`): tried
            // again, twice, and back in the dead letters (still no `@`).
            let broker = Broker::current();
            assert_eq!(broker.requeue_dead_letters(Mail::NAME).await.unwrap(), 1);
            while broker.dead_letters(Mail::NAME).await.unwrap().is_empty() {
                actix_rt::time::sleep(Duration::from_millis(10)).await;
            }
            let level = kit
                .call(StockLevel {
                    item: "apple".into(),
                })
                .await
                .unwrap();
            assert_eq!(level.one::<u64>(), Ok(5));
            mailer.stop().await.unwrap();
            stock.stop().await.unwrap();
        });
    }

    #[test]
    fn in_process() {
        the_mailer_and_the_stock(TestKit::new());
    }

    #[test]
    #[cfg(feature = "redis")]
    #[cfg_attr(not(service_redis), ignore = "needs REDIS_URL")]
    fn on_redis() {
        let url = std::env::var("REDIS_URL").expect("REDIS_URL");
        the_mailer_and_the_stock(
            TestKit::new()
                .bus(BusConfig::redis(&url).unwrap())
                .broker(BrokerConfig::redis(&url).unwrap()),
        );
    }
}
