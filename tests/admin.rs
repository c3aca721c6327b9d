//! The admin endpoints over real HTTP: without the token, or with another,
//! nothing is shown or done (401); with it, dead letters are listed,
//! requeued and purged, and a queue purged.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use microagent::broker::{Broker, Queue};
use microagent::prelude::*;
use microagent::web::HealthServer;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use support::{Boom, Events};

const TOKEN: &str = "a-token-of-some-length";

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "mail")]
struct Mail {
    to: String,
}

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "backlog")]
struct Backlog {
    n: u32,
}

/// Fails every mail while `broken`, with no retry.
#[derive(Default, MicroAgent)]
struct Mailer {
    broken: Arc<AtomicBool>,
    events: Events,
}

#[microagent::hooks]
impl Mailer {
    #[consumer(Mail, attempts = 1)]
    fn send_mail(&mut self, mail: Mail) -> Result<(), Boom> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(Boom("smtp down"));
        }
        self.events.push(format!("sent to {}", mail.to));
        Ok(())
    }
}

/// Sends a request; its status and JSON body.
async fn request(method: &str, url: &str, token: Option<&str>) -> (u16, Value) {
    let client = awc::Client::default();
    let mut request = match method {
        "GET" => client.get(url),
        "POST" => client.post(url),
        _ => client.delete(url),
    };
    if let Some(token) = token {
        request = request.insert_header(("authorization", format!("Bearer {token}")));
    }
    let mut response = request.send().await.expect("the server answers");
    let body = response.body().await.expect("a body");
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (response.status().as_u16(), json)
}

#[test]
fn dead_letters_are_listed_requeued_and_purged_only_with_the_token() {
    let events = Events::default();
    let watched = events.clone();
    microagent::run(async move {
        let broken = Arc::new(AtomicBool::new(true));
        let (mailer, _m) = microagent::start(Mailer {
            broken: broken.clone(),
            events: watched.clone(),
        });
        mailer.send(GetInfo).await.expect("started");
        let (_h, health) = microagent::start(HealthServer::new("127.0.0.1:0").admin(TOKEN));
        let addr = health.bound_address("http").await.expect("it listens");
        let base = format!("http://{addr}/admin/queues");
        let broker = Broker::current();
        for to in ["ann", "bob"] {
            broker.send(Mail { to: to.into() }).await.unwrap();
        }
        while broker.dead_letters("mail").await.unwrap().len() < 2 {
            actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let dead = format!("{base}/mail/dead-letters");

        // No token, another token: 401, and nothing moves.
        for token in [None, Some("another-token-of-length")] {
            for (method, url) in [
                ("GET", dead.clone()),
                ("POST", format!("{dead}/requeue")),
                ("DELETE", dead.clone()),
                ("DELETE", format!("{base}/backlog")),
            ] {
                let (status, _) = request(method, &url, token).await;
                assert_eq!(status, 401, "{method} {url} with {token:?}");
            }
        }
        assert_eq!(broker.dead_letters("mail").await.unwrap().len(), 2);

        // The token: listed, then requeued once the cause is fixed.
        let (status, listed) = request("GET", &dead, Some(TOKEN)).await;
        assert_eq!(status, 200);
        assert_eq!(listed[0]["message"], json!({"to": "ann"}));
        assert_eq!(listed[1]["reason"], "smtp down");
        broken.store(false, Ordering::SeqCst);
        let (status, requeued) = request("POST", &format!("{dead}/requeue"), Some(TOKEN)).await;
        assert_eq!((status, requeued), (200, json!({"requeued": 2})));
        watched.seen("sent to ann").await;
        watched.seen("sent to bob").await;

        // Broken again: one dead letter, purged; a backlog purged.
        broken.store(true, Ordering::SeqCst);
        broker.send(Mail { to: "cy".into() }).await.unwrap();
        while broker.dead_letters("mail").await.unwrap().is_empty() {
            actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let (status, purged) = request("DELETE", &dead, Some(TOKEN)).await;
        assert_eq!((status, purged), (200, json!({"purged": 1})));
        for n in 0..3 {
            broker.send(Backlog { n }).await.unwrap();
        }
        let (status, purged) = request("DELETE", &format!("{base}/backlog"), Some(TOKEN)).await;
        assert_eq!((status, purged), (200, json!({"purged": 3})));
        assert_eq!(broker.length("backlog").await.unwrap(), 0);
    });
    assert_eq!(events.count("sent to cy"), 0);
}
