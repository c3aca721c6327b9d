//! The health endpoints served on a bound port inside a test's System,
//! and readiness polled over real HTTP.

use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer};

use super::process::HANG;

/// `microagent::web::health` on a free loopback port.
pub(crate) struct Health {
    base: String,
    client: awc::Client,
    handle: ServerHandle,
}

impl Health {
    /// Starts the server; call inside the System whose agents it reports.
    pub(crate) fn start() -> Health {
        let http = HttpServer::new(|| App::new().configure(microagent::web::health))
            .workers(1)
            .disable_signals()
            .bind("127.0.0.1:0")
            .expect("a free port");
        let base = format!("http://{}", http.addrs()[0]);
        let server = http.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Health {
            base,
            client: awc::Client::default(),
            handle,
        }
    }

    /// `GET /health/ready`'s status.
    pub(crate) async fn ready(&self) -> u16 {
        self.client
            .get(format!("{}/health/ready", self.base))
            .send()
            .await
            .expect("the health server answers")
            .status()
            .as_u16()
    }

    /// Polls readiness until it is `status` (a hang detector bounds it).
    pub(crate) async fn ready_becomes(&self, status: u16) {
        let start = Instant::now();
        while self.ready().await != status {
            assert!(start.elapsed() < HANG, "readiness never became {status}");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn stop(self) {
        self.handle.stop(true).await;
    }
}
