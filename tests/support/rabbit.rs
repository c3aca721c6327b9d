//! A RabbitMQ node of the test's own, on free loopback ports, for the tests
//! that stop and restart the broker (the shared one from `AMQP_URL` must
//! stay up for the others).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::net::free_port;
use super::process::HANG;
use super::redis::{answers, Restartable};

/// Where Debian's package puts the server's own script (the one on the
/// PATH insists on running as the `rabbitmq` user).
const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

/// A private node: its name, AMQP port and data directory (kept across a
/// restart, so durable queues and persistent messages survive it).
pub(crate) struct RabbitServer {
    node: String,
    port: u16,
    dist_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RabbitServer {
    /// Starts one. A test that runs it is one of the RabbitMQ tests
    /// (ignored without `AMQP_URL`): the server must be installed.
    pub(crate) fn start(test: &str) -> RabbitServer {
        assert!(
            std::path::Path::new(SERVER).exists(),
            "{test} needs a RabbitMQ server at {SERVER}, beside the one at AMQP_URL"
        );
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("microagent-rabbit-{id}"));
        std::fs::create_dir_all(&dir).expect("a data directory");
        let mut server = RabbitServer {
            node: format!("mtest{}@localhost", &id[..12]),
            port: free_port(),
            dist_port: free_port(),
            dir,
            child: None,
        };
        server.restart();
        server
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub(crate) fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn run(&mut self) {
        let config = self.dir.join("rabbitmq.conf");
        std::fs::write(
            &config,
            format!("listeners.tcp.default = 127.0.0.1:{}\n", self.port),
        )
        .expect("the config is written");
        let child = Command::new(SERVER)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_CONFIG_FILE", &config)
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", self.dir.join("plugins"))
            .env("RABBITMQ_PID_FILE", self.dir.join("pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rabbitmq-server runs");
        self.child = Some(child);
    }
}

impl Restartable for RabbitServer {
    /// Stops the node (`rabbitmqctl stop`) and waits until it is gone.
    fn stop(&mut self) {
        let _ = Command::new(CTL)
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut child) = self.child.take() {
            let start = Instant::now();
            while let Ok(None) = child.try_wait() {
                if start.elapsed() > HANG {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts the node (again) and waits until it takes connections.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.run();
        let start = Instant::now();
        while !amqp_answers(self.port) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("rabbitmq-server exited: {status}");
            }
            assert!(start.elapsed() < HANG, "rabbitmq-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether an AMQP broker on `port` answers the protocol header with a
/// method frame (type 1: `Connection.Start`).
fn amqp_answers(port: u16) -> bool {
    answers(port, b"AMQP\x00\x00\x09\x01", &[1])
}

impl Drop for RabbitServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
