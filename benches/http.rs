//! The same handler served by an agent's server hook and by a bare
//! actix-web `HttpServer`, loaded in the same run by the same client.
//!
//! `cargo bench --bench http [-- REQUESTS]` (REQUESTS per round and side,
//! default 20 000; 32 concurrent connections; one server worker each; best
//! of 5 alternating rounds). The last line is `http ratio: X.XX`, agent rate
//! over bare rate.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpServer};
use microagent::prelude::*;

const ROUNDS: usize = 5;
const CONCURRENCY: usize = 32;

async fn hello() -> &'static str {
    "hello\n"
}

fn app() -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new().route("/", web::get().to(hello))
}

/// Serves `app()` from its server hook, on a listener bound by the bench.
#[derive(Default, MicroAgent)]
struct Web {
    listener: Option<TcpListener>,
}

#[microagent::hooks]
impl Web {
    #[on(server)]
    fn http(&mut self, srv: ServerContext<Self>) -> impl Future<Output = std::io::Result<()>> {
        let listener = self.listener.take();
        async move {
            let listener = listener.ok_or_else(|| std::io::Error::other("no listener"))?;
            let server = HttpServer::new(app).workers(1).listen(listener)?;
            microagent::web::serve(server, srv).await
        }
    }
}

/// `requests` GETs over `CONCURRENCY` connections; returns requests/s.
async fn load(client: &awc::Client, addr: SocketAddr, requests: usize) -> f64 {
    let url = format!("http://{addr}/");
    let start = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            let share = requests / CONCURRENCY + usize::from(i < requests % CONCURRENCY);
            actix_rt::spawn(async move {
                for _ in 0..share {
                    let mut response = client.get(&url).send().await.expect("answered");
                    assert_eq!(response.status(), 200);
                    response.body().await.expect("body");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("load task");
    }
    requests as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let requests: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("REQUESTS is a whole number"))
        .unwrap_or(20_000);
    let (agent, bare) = microagent::run(async move {
        let bare_listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let agent_listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let bare_addr = bare_listener.local_addr().expect("addr");
        let agent_addr = agent_listener.local_addr().expect("addr");

        let bare_server = HttpServer::new(app)
            .workers(1)
            .disable_signals()
            .listen(bare_listener)
            .expect("listen")
            .run();
        let bare_handle = bare_server.handle();
        actix_rt::spawn(bare_server);
        let (web, handle) = microagent::start(Web {
            listener: Some(agent_listener),
        });

        let client = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish();
        // Warm both up (connections, workers) before timing.
        load(&client, bare_addr, requests / 10 + 1).await;
        load(&client, agent_addr, requests / 10 + 1).await;
        let (mut agent, mut bare) = (0.0f64, 0.0f64);
        for _ in 0..ROUNDS {
            bare = bare.max(load(&client, bare_addr, requests).await);
            agent = agent.max(load(&client, agent_addr, requests).await);
        }

        bare_handle.stop(true).await;
        handle.stop();
        handle.await.expect("the agent stops cleanly");
        drop(web);
        (agent, bare)
    });
    println!("agent server hook: {agent:.0} requests/s");
    println!("bare HttpServer: {bare:.0} requests/s");
    println!("http ratio: {:.2}", agent / bare);
}
