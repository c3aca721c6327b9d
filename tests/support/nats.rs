//! NATS for the tests: private `nats-server`s (JetStream on, a store
//! directory of their own) for the tests that stop one or need
//! credentials, and the NATS protocol spoken by hand to publish what a
//! misbehaving peer would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::HANG;
use super::redis::Restartable;
use super::tempdir::TempDir;

/// A `nats-server` of the test's own, on a free loopback port.
pub(crate) struct NatsServer {
    port: u16,
    child: Option<Child>,
    /// Its JetStream store, kept across restarts.
    store: TempDir,
    /// Arguments beside the port and store (`--user`, `--auth`, ...).
    args: Vec<String>,
}

impl NatsServer {
    /// Starts one with JetStream on a free port.
    pub(crate) fn start() -> NatsServer {
        NatsServer::start_with(&[])
    }

    /// Starts one with `args` (`["--user", "u", "--pass", "p"]`).
    pub(crate) fn start_with(args: &[&str]) -> NatsServer {
        let mut server = NatsServer {
            port: 0,
            child: None,
            store: TempDir::new(&format!("nats-{}", uuid::Uuid::new_v4().simple())),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        for _ in 0..5 {
            server.port = super::net::free_port();
            if server.try_start() {
                return server;
            }
        }
        panic!("nats-server could not start on five free ports in a row");
    }

    /// `nats://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops it and waits until it is gone.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again, on the same port and store.
    pub(crate) fn restart(&mut self) {
        assert!(
            self.try_start(),
            "nats-server could not start again on port {}",
            self.port
        );
    }

    fn try_start(&mut self) -> bool {
        assert!(self.child.is_none(), "already running");
        let binary = ["/usr/sbin/nats-server", "nats-server"]
            .into_iter()
            .find(|b| !b.starts_with('/') || std::path::Path::new(b).exists())
            .unwrap_or("nats-server");
        let mut child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js"])
            .arg("-sd")
            .arg(&self.store.0)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed");
        let start = Instant::now();
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if speaks(self.port) {
                self.child = Some(child);
                return true;
            }
            assert!(start.elapsed() < HANG, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Restartable for NatsServer {
    fn stop(&mut self) {
        NatsServer::stop(self);
    }

    fn restart(&mut self) {
        NatsServer::restart(self);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // Before its store goes.
        self.stop();
    }
}

/// Whether a NATS server on loopback `port` greets with its INFO line.
fn speaks(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut greeting = [0u8; 4];
    stream.read_exact(&mut greeting).is_ok() && &greeting == b"INFO"
}

/// Publishes on `url`'s server (no credentials) with the protocol by hand:
/// `subject`, NATS headers `headers` (none when empty) and `payload`; waits
/// for the server's PONG, so it has taken the message.
pub(crate) fn publish_raw(url: &str, subject: &str, headers: &[(&str, &str)], payload: &[u8]) {
    let address = url.trim_start_matches("nats://");
    let mut stream = TcpStream::connect(address).expect("NATS listens");
    stream.set_read_timeout(Some(HANG)).unwrap();
    let mut out = b"CONNECT {\"verbose\":false,\"headers\":true}\r\n".to_vec();
    if headers.is_empty() {
        out.extend(format!("PUB {subject} {}\r\n", payload.len()).bytes());
    } else {
        let mut block = "NATS/1.0\r\n".to_owned();
        for (name, value) in headers {
            block.push_str(&format!("{name}: {value}\r\n"));
        }
        block.push_str("\r\n");
        let total = block.len() + payload.len();
        out.extend(format!("HPUB {subject} {} {total}\r\n{block}", block.len()).bytes());
    }
    out.extend(payload);
    out.extend(b"\r\nPING\r\n");
    stream.write_all(&out).unwrap();
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("PONG") {
        let read = stream.read(&mut buffer).expect("the server answers");
        assert!(read > 0, "the server closed the connection");
        seen.extend(&buffer[..read]);
        assert!(
            !String::from_utf8_lossy(&seen).contains("-ERR"),
            "{}",
            String::from_utf8_lossy(&seen)
        );
    }
}
