//! Redis for the tests: the shared server named by `REDIS_URL`, a unique
//! channel prefix per test, and private `redis-server`s for the tests that
//! stop or restart one.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::HANG;

/// The shared Redis, from `REDIS_URL`; `None` (and a visible "skipped"
/// line) without it. A URL that is set must work: tests fail on it.
pub(crate) fn url(test: &str) -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "SKIPPED {test}: REDIS_URL is not set (e.g. REDIS_URL=redis://127.0.0.1:6379)"
            );
            None
        }
    }
}

/// The shared RabbitMQ, from `AMQP_URL`; `None` (and a visible "skipped"
/// line) without it.
pub(crate) fn amqp_url(test: &str) -> Option<String> {
    match std::env::var("AMQP_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("SKIPPED {test}: AMQP_URL is not set (e.g. AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f)");
            None
        }
    }
}

/// A channel prefix no other test (or run) uses, so tests running at once
/// on one Redis do not hear each other.
pub(crate) fn prefix() -> String {
    format!("T{}", uuid::Uuid::new_v4().simple())
}

/// A `redis-server` of the test's own, on a free loopback port.
pub(crate) struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub(crate) fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = RedisServer { port, child: None };
        server.restart();
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again, on the same port) and waits until it accepts.
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(start.elapsed() < HANG, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills it and waits until it is gone.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
