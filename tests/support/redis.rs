//! Redis for the tests: the shared server named by `REDIS_URL`, a unique
//! channel prefix per test, and private `redis-server`s for the tests that
//! stop or restart one.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::HANG;

/// The shared Redis, from `REDIS_URL`. A test that calls this is marked
/// `#[cfg_attr(not(service_redis), ignore = "needs REDIS_URL")]`: built
/// without the variable it shows as ignored; run anyway
/// (`--include-ignored`), it fails here rather than pass untested.
pub(crate) fn url() -> String {
    service("REDIS_URL", "redis://127.0.0.1:6379")
}

/// The shared RabbitMQ, from `AMQP_URL` (`service_amqp`, as [`url`]).
pub(crate) fn amqp_url() -> String {
    service("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
}

/// The shared NATS server with JetStream, from `NATS_URL` (`service_nats`,
/// as [`url`]).
#[allow(dead_code)]
pub(crate) fn nats_url() -> String {
    service("NATS_URL", "nats://127.0.0.1:4222")
}

/// A Python with `microagent[redis,amqp,kafka]==1.9.0`, from `INTEROP_PYTHON`
/// (`service_python`, as [`url`]).
pub(crate) fn python() -> String {
    service(
        "INTEROP_PYTHON",
        "a python with microagent[redis,amqp,kafka]==1.9.0 (.ci/run makes one)",
    )
}

fn service(variable: &str, example: &str) -> String {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!("this test needs {variable} (e.g. {example}); built without it, it is ignored"),
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
    /// Arguments before `--port` (a configuration file first, if any).
    args: Vec<String>,
    /// Killed when the thread that started it ends (a server the tests
    /// share, started from a thread that lives as long as the process).
    dies_with_thread: bool,
}

impl RedisServer {
    /// Starts one on a free port (another port when the one it picked was
    /// taken before the server could bind it).
    pub(crate) fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts one with `args` before its port (`["--replicaof",
    /// "127.0.0.1", "6379"]`, or a Sentinel's file and `--sentinel`).
    pub(crate) fn start_with(args: &[&str]) -> RedisServer {
        for _ in 0..5 {
            let port = super::net::free_port();
            let args = args.iter().map(|a| (*a).to_owned()).collect();
            let mut server = RedisServer {
                port,
                child: None,
                args,
                dies_with_thread: false,
            };
            if server.try_start() {
                return server;
            }
        }
        panic!("redis-server could not start on five free ports in a row");
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Starts it again, on the same port.
    pub(crate) fn restart(&mut self) {
        assert!(
            self.try_start(),
            "redis-server could not start again on port {}",
            self.port
        );
    }

    /// Starts it and waits until it answers PING; `false` when it exited
    /// first (its port was taken).
    fn try_start(&mut self) -> bool {
        assert!(self.child.is_none(), "already running");
        let mut command = Command::new("redis-server");
        command
            .args(&self.args)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.dies_with_thread {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl(2) in the child before exec, async-signal-safe.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().expect("redis-server is installed");
        let start = Instant::now();
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            // A PONG, not just a connection: a connect to a port nobody
            // listens on can connect to itself on Linux.
            if pong(self.port) {
                self.child = Some(child);
                return true;
            }
            assert!(start.elapsed() < HANG, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends it a signal (`libc::SIGSTOP` freezes it: connections stay
    /// open, nothing is answered; `libc::SIGCONT` thaws it).
    pub(crate) fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("running");
        // SAFETY: kill(2) on our own child's pid, with a valid signal.
        let sent = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        assert_eq!(sent, 0, "kill({signal})");
    }

    /// Kills it and waits until it is gone.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a server on loopback `port` answers `request` with a reply
/// that starts with `expected`: a server that speaks, not just a
/// connection (a connect to a port nobody listens on can connect to itself
/// on Linux).
pub(crate) fn answers(port: u16, request: &[u8], expected: &[u8]) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reply = vec![0u8; expected.len()];
    stream.write_all(request).is_ok() && stream.read_exact(&mut reply).is_ok() && reply == expected
}

/// Whether a Redis on `port` answers PING.
fn pong(port: u16) -> bool {
    answers(port, b"PING\r\n", b"+PONG\r\n")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A server of the test's own that can be stopped and started again.
pub(crate) trait Restartable: Send + 'static {
    /// Stops it and waits until it is gone.
    fn stop(&mut self);
    /// Starts it again, where it was.
    fn restart(&mut self);
}

impl Restartable for RedisServer {
    fn stop(&mut self) {
        RedisServer::stop(self);
    }

    fn restart(&mut self) {
        RedisServer::restart(self);
    }
}

/// A private server stopped and started from a thread of its own, so an
/// async test can switch it without blocking its arbiter.
pub(crate) struct Switch {
    requests: Option<std::sync::mpsc::Sender<bool>>,
    done: std::sync::mpsc::Receiver<()>,
    control: Option<std::thread::JoinHandle<()>>,
}

impl Switch {
    pub(crate) fn new<S: Restartable>(mut server: S) -> Switch {
        let (requests, asked) = std::sync::mpsc::channel::<bool>();
        let (done_tx, done) = std::sync::mpsc::channel();
        let control = std::thread::spawn(move || {
            for up in asked {
                if up {
                    server.restart();
                } else {
                    server.stop();
                }
                if done_tx.send(()).is_err() {
                    break;
                }
            }
        });
        Switch {
            requests: Some(requests),
            done,
            control: Some(control),
        }
    }

    /// Stops (`false`) or starts (`true`) the server, and waits until it is
    /// done, polling on the current actix runtime.
    pub(crate) async fn set(&self, up: bool) {
        let requests = self.requests.as_ref().expect("running");
        requests.send(up).expect("the control thread runs");
        loop {
            match self.done.try_recv() {
                Ok(()) => return,
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    actix_rt::time::sleep(Duration::from_millis(10)).await
                }
                Err(e) => panic!("the control thread: {e}"),
            }
        }
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(control) = self.control.take() {
            let _ = control.join();
        }
    }
}

/// Runs `redis-cli` against loopback `port`; its output, trimmed.
pub(crate) fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli is installed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Waits until `done` holds (a hang detector, not a threshold).
pub(crate) fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < HANG, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A master, its replica and a Sentinel watching them as `mymaster`, on
/// free loopback ports.
pub(crate) struct SentinelGroup {
    pub(crate) master: RedisServer,
    pub(crate) replica: RedisServer,
    pub(crate) sentinel: RedisServer,
    _dir: super::TempDir,
}

impl SentinelGroup {
    pub(crate) fn start() -> SentinelGroup {
        let master = RedisServer::start();
        let master_port = master.port().to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master_port]);
        wait_for("the replica in sync", || {
            redis_cli(replica.port(), &["INFO", "replication"]).contains("master_link_status:up")
        });
        let dir = super::TempDir::new("sentinel");
        let conf = dir.file(
            "sentinel.conf",
            &format!(
                "sentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds mymaster 5000\n\
                 sentinel failover-timeout mymaster 10000\n"
            ),
        );
        let conf = conf.to_string_lossy().into_owned();
        let sentinel = RedisServer::start_with(&[&conf, "--sentinel"]);
        wait_for("the Sentinel to know the replica", || {
            redis_cli(sentinel.port(), &["SENTINEL", "replicas", "mymaster"])
                .contains(&replica.port().to_string())
        });
        SentinelGroup {
            master,
            replica,
            sentinel,
            _dir: dir,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/mymaster",
            self.sentinel.port()
        )
    }

    /// The master's port as the Sentinel names it.
    pub(crate) fn master_port(&self) -> String {
        redis_cli(
            self.sentinel.port(),
            &["SENTINEL", "get-master-addr-by-name", "mymaster"],
        )
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_owned()
    }

    /// Makes the Sentinel fail the master over to the replica, and waits
    /// until the replica is the master and the old master is demoted (its
    /// clients killed, its writes refused).
    pub(crate) fn fail_over(sentinel: u16, replica: u16, master: u16) {
        // Until the Sentinel has fresh word from the replica, it finds "no
        // good replica": ask again.
        wait_for("the Sentinel to start a failover", || {
            redis_cli(sentinel, &["SENTINEL", "FAILOVER", "mymaster"]) == "OK"
        });
        let replica = replica.to_string();
        wait_for("the replica promoted", || {
            redis_cli(
                sentinel,
                &["SENTINEL", "get-master-addr-by-name", "mymaster"],
            )
            .lines()
            .nth(1)
                == Some(replica.as_str())
        });
        wait_for("the old master demoted", || {
            redis_cli(master, &["INFO", "replication"]).contains("role:slave")
        });
    }
}

/// A Redis Cluster on free loopback ports: three masters, each with a
/// replica.
pub(crate) struct RedisCluster {
    pub(crate) nodes: Vec<RedisServer>,
    _dir: super::TempDir,
}

impl RedisCluster {
    /// Starts six nodes, makes them a cluster and waits until every node
    /// sees it whole and serving.
    pub(crate) fn start() -> RedisCluster {
        RedisCluster::start_as(false)
    }

    /// The cluster the tests of this process share (the matrix's
    /// `redis_cluster` backend): started once, killed with the process.
    pub(crate) fn shared_url() -> &'static str {
        static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        URL.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let cluster = RedisCluster::start_as(true);
                tx.send(cluster.url()).expect("the test waits for it");
                // This thread lives as long as the process: its servers
                // die with it.
                loop {
                    std::thread::park();
                }
            });
            rx.recv().expect("the shared cluster started")
        })
    }

    fn start_as(dies_with_thread: bool) -> RedisCluster {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = super::TempDir::new(&format!("cluster{n}"));
        let nodes: Vec<RedisServer> = (0..6)
            .map(|i| {
                let node_dir = dir.0.join(i.to_string());
                std::fs::create_dir_all(&node_dir).expect("a node's directory");
                let node_dir = node_dir.to_string_lossy().into_owned();
                let cluster_port = super::net::free_port().to_string();
                let args = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &cluster_port,
                    "--cluster-node-timeout",
                    "2000",
                    "--dir",
                    &node_dir,
                ];
                let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
                for _ in 0..5 {
                    let mut server = RedisServer {
                        port: super::net::free_port(),
                        child: None,
                        args: args.clone(),
                        dies_with_thread,
                    };
                    if server.try_start() {
                        return server;
                    }
                }
                panic!("a cluster node could not start on five free ports in a row");
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli is installed");
        assert!(created.success(), "redis-cli --cluster create failed");
        let cluster = RedisCluster { nodes, _dir: dir };
        cluster.wait_whole();
        cluster
    }

    /// Waits until every node sees the cluster serving, with six nodes
    /// and three masters.
    pub(crate) fn wait_whole(&self) {
        for node in &self.nodes {
            wait_for("every node sees the cluster whole", || {
                let info = redis_cli(node.port(), &["CLUSTER", "INFO"]);
                let nodes = redis_cli(node.port(), &["CLUSTER", "NODES"]);
                info.contains("cluster_state:ok")
                    && nodes.lines().count() == 6
                    && nodes.lines().filter(|l| l.contains("master")).count() == 3
                    && !nodes.contains("fail")
            });
        }
    }

    /// Its URL, naming two of its nodes as seeds (`first` first).
    pub(crate) fn url_from(&self, first: usize) -> String {
        let second = (first + 1) % self.nodes.len();
        format!(
            "redis+cluster://127.0.0.1:{},127.0.0.1:{}",
            self.nodes[first].port(),
            self.nodes[second].port()
        )
    }

    pub(crate) fn url(&self) -> String {
        self.url_from(0)
    }

    /// The slot of `key`.
    pub(crate) fn slot_of(&self, key: &str) -> u16 {
        redis_cli(self.nodes[0].port(), &["CLUSTER", "KEYSLOT", key])
            .parse()
            .expect("a slot")
    }

    /// The ports of the master serving `slot` and of its replica.
    pub(crate) fn master_and_replica_of(&self, slot: u16) -> (u16, u16) {
        let nodes = redis_cli(self.nodes[0].port(), &["CLUSTER", "NODES"]);
        let port_of = |line: &str| -> u16 {
            let addr = line.split(' ').nth(1).expect("an address");
            let port = addr.split(['@', ',']).next().unwrap().rsplit(':').next();
            port.unwrap().parse().expect("a port")
        };
        let serves = |line: &str| {
            line.split(' ').skip(8).any(|range| {
                let mut ends = range.split('-').map(|n| n.parse::<u16>());
                match (ends.next(), ends.next()) {
                    (Some(Ok(a)), Some(Ok(b))) => (a..=b).contains(&slot),
                    (Some(Ok(a)), None) => a == slot,
                    _ => false,
                }
            })
        };
        let master = nodes
            .lines()
            .find(|line| line.contains("master") && serves(line))
            .expect("a master serves the slot");
        let master_id = master.split(' ').next().unwrap();
        let replica = nodes
            .lines()
            .find(|line| line.split(' ').nth(3) == Some(master_id))
            .expect("the master has a replica");
        (port_of(master), port_of(replica))
    }

    /// Fails the master of `slot` over to its replica (`CLUSTER
    /// FAILOVER`: the old master stays up, its connections open, and
    /// becomes a replica) and waits until the cluster is whole again with
    /// the roles swapped; the old master's port and the new one's.
    pub(crate) fn fail_over(&self, slot: u16) -> (u16, u16) {
        let (master, replica) = self.master_and_replica_of(slot);
        assert_eq!(redis_cli(replica, &["CLUSTER", "FAILOVER"]), "OK");
        wait_for("the replica promoted", || {
            redis_cli(replica, &["ROLE"]).starts_with("master")
                && redis_cli(master, &["ROLE"]).starts_with("slave")
        });
        self.wait_whole();
        assert_eq!(self.master_and_replica_of(slot), (replica, master));
        (master, replica)
    }
}
