//! Where the Redis bus and broker connect: one server by its URL, or the
//! master a Redis Sentinel names, asked again at every (re)connection, so
//! that after a failover the next connection goes to the new master; or a
//! Redis Cluster.
//!
//! `redis+sentinel://[[user]:password@]host:port[,host:port...]/MASTER[/DB]`
//! names the Sentinels (their own port, usually 26379) and the master's
//! name in their configuration; the password and the database are the
//! master's. A Sentinel demotes the old master with `CLIENT KILL`, so the
//! connections made to it break and are made again, to the new master.
//!
//! `redis+cluster://[[user]:password@]host:port[,host:port...]` names some
//! of a cluster's nodes (seeds); the client learns the rest, and follows
//! slots as they move (`MOVED`, a failover). Commands go through a cluster
//! connection that sends each to the master of its key's slot. Pub/sub
//! goes to one node, the *home* node: the master of slot 0, asked of the
//! seeds at every (re)connection (see [`RedisTarget::client`]).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisConnectionInfo, RedisFuture};
use redis::{RedisResult, Value};

/// The scheme of a Sentinel-served Redis.
pub(crate) const SENTINEL_SCHEME: &str = "redis+sentinel";

/// The scheme of a Redis Cluster.
pub(crate) const CLUSTER_SCHEME: &str = "redis+cluster";

/// One Redis server, the master of a Sentinel-served group, or a cluster.
#[derive(Clone)]
pub(crate) enum RedisTarget {
    Server(Client),
    Sentinel(Arc<tokio::sync::Mutex<SentinelClient>>),
    Cluster(Arc<Cluster>),
}

/// A Redis Cluster: its client, and its seeds to find the home node.
pub(crate) struct Cluster {
    client: ClusterClient,
    /// The seeds' URLs (`redis://[userinfo@]host:port`), in the order given.
    seeds: Vec<String>,
    /// `user:password` as the URL gave it (still percent-encoded).
    userinfo: Option<String>,
}

impl RedisTarget {
    /// The target `url` names; the reason when it names none.
    pub(crate) fn open(url: &str) -> Result<RedisTarget, String> {
        let rest = |scheme: &str| url.strip_prefix(scheme).and_then(|r| r.strip_prefix("://"));
        if let Some(rest) = rest(SENTINEL_SCHEME) {
            return sentinel(rest)
                .map(|client| RedisTarget::Sentinel(Arc::new(tokio::sync::Mutex::new(client))));
        }
        if let Some(rest) = rest(CLUSTER_SCHEME) {
            return cluster(rest).map(|cluster| RedisTarget::Cluster(Arc::new(cluster)));
        }
        Client::open(url)
            .map(RedisTarget::Server)
            .map_err(|e| format!("{:?}", e.kind()))
    }

    /// Whether it is a cluster: every key one script or transaction
    /// touches must then hash to one slot.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, RedisTarget::Cluster(_))
    }

    /// A client for the server, for the master the Sentinels name now, or
    /// for a cluster's home node: the master of slot 0 now. Every bus on
    /// the cluster subscribes and publishes there, so that `PUBLISH`
    /// counts every bus's subscription (a cluster forwards a message to
    /// every node, but each node counts only its own subscribers).
    pub(crate) async fn client(&self) -> RedisResult<Client> {
        match self {
            RedisTarget::Server(client) => Ok(client.clone()),
            RedisTarget::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await,
            RedisTarget::Cluster(cluster) => cluster.home().await,
        }
    }

    /// A new connection for commands: multiplexed to the server (or the
    /// master), or to the cluster.
    pub(crate) async fn connect(&self) -> RedisResult<Connection> {
        match self {
            RedisTarget::Cluster(cluster) => cluster
                .client
                .get_async_connection()
                .await
                .map(Connection::Cluster),
            _ => self
                .client()
                .await?
                .get_multiplexed_async_connection()
                .await
                .map(Connection::Single),
        }
    }

    /// A new connection for commands that block (`BLMOVE`): a connection
    /// of its own, so that nothing waits behind them, whose answers may
    /// take `response_timeout`.
    pub(crate) async fn connect_blocking(
        &self,
        response_timeout: Duration,
    ) -> RedisResult<Connection> {
        match self {
            RedisTarget::Cluster(cluster) => {
                let config = ClusterConfig::new().set_response_timeout(response_timeout);
                cluster
                    .client
                    .get_async_connection_with_config(config)
                    .await
                    .map(Connection::Cluster)
            }
            _ => {
                let config =
                    AsyncConnectionConfig::new().set_response_timeout(Some(response_timeout));
                self.client()
                    .await?
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(Connection::Single)
            }
        }
    }
}

/// A connection for commands: to one server, or to a cluster (which sends
/// each command to its key's master).
#[derive(Clone)]
pub(crate) enum Connection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(connection) => connection.req_packed_command(cmd),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            Connection::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
        }
    }
}

impl Cluster {
    /// A client for the master of slot 0, asked of each seed in turn.
    async fn home(&self) -> RedisResult<Client> {
        let mut last = None;
        for seed in &self.seeds {
            match self.home_from(seed).await {
                Ok(client) => return Ok(client),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no seed").into()))
    }

    /// The master of slot 0, as `seed` sees the cluster.
    async fn home_from(&self, seed: &str) -> RedisResult<Client> {
        let mut connection = Client::open(seed)?
            .get_multiplexed_async_connection()
            .await?;
        let slots: Vec<Vec<Value>> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut connection)
            .await?;
        let seed_host = seed
            .rsplit_once('@')
            .map_or(seed.trim_start_matches("redis://"), |(_, host)| host)
            .rsplit_once(':')
            .map_or("", |(host, _)| host);
        let (host, port) = slot_zero_master(&slots).ok_or_else(|| {
            redis::RedisError::from(std::io::Error::other(
                "the cluster serves no slot 0 (CLUSTER SLOTS)",
            ))
        })?;
        // An empty address is the seed's own host.
        let host = if host.is_empty() { seed_host } else { &host };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        Client::open(node_url(self.userinfo.as_deref(), &format!("{host}:{port}")).as_str())
    }
}

/// The master (`host`, `port`) of slot 0 in a `CLUSTER SLOTS` answer:
/// ranges `[start, end, [host, port, id, ...], replicas...]`.
fn slot_zero_master(slots: &[Vec<Value>]) -> Option<(String, i64)> {
    let int = |value: &Value| match value {
        Value::Int(n) => Some(*n),
        _ => None,
    };
    slots.iter().find_map(|range| match range.as_slice() {
        [start, _, Value::Array(master), ..] if int(start)? == 0 => match master.as_slice() {
            [Value::BulkString(host), port, ..] => {
                Some((String::from_utf8_lossy(host).into_owned(), int(port)?))
            }
            _ => None,
        },
        _ => None,
    })
}

/// A node's URL, with the URL's `userinfo` (percent-encoded, as given).
fn node_url(userinfo: Option<&str>, host: &str) -> String {
    match userinfo {
        Some(userinfo) => format!("redis://{userinfo}@{host}"),
        None => format!("redis://{host}"),
    }
}

/// A cluster client from `[[user]:password@]host:port[,...]`.
fn cluster(rest: &str) -> Result<Cluster, String> {
    let (userinfo, hosts) = match rest.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo.to_owned()), hosts),
        None => (None, rest),
    };
    let hosts = hosts.strip_suffix('/').unwrap_or(hosts);
    if hosts.contains('/') {
        return Err("a cluster has no database: expected redis+cluster://host:port[,...]".into());
    }
    let seeds: Vec<String> = hosts
        .split(',')
        .filter(|host| !host.is_empty())
        .map(|host| node_url(userinfo.as_deref(), host))
        .collect();
    if seeds.is_empty() {
        return Err("no node address: expected redis+cluster://host:port[,...]".into());
    }
    let client = ClusterClientBuilder::new(seeds.iter().map(String::as_str))
        .build()
        .map_err(|e| format!("{:?}", e.kind()))?;
    Ok(Cluster {
        client,
        seeds,
        userinfo,
    })
}

/// A Sentinel client from `[[user]:password@]hosts/MASTER[/DB]`.
fn sentinel(rest: &str) -> Result<SentinelClient, String> {
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => (Some(userinfo), rest),
        None => (None, rest),
    };
    let (hosts, path) = rest
        .split_once('/')
        .ok_or("no master name: expected redis+sentinel://host:port[,...]/MASTER")?;
    let mut path = path.split('/');
    let master = path
        .next()
        .filter(|name| !name.is_empty())
        .ok_or("no master name: expected redis+sentinel://host:port[,...]/MASTER")?;
    let db = match path.next() {
        Some(db) if !db.is_empty() => db.parse::<i64>().map_err(|_| "the database is a number")?,
        _ => 0,
    };
    let sentinels: Vec<String> = hosts
        .split(',')
        .filter(|host| !host.is_empty())
        .map(|host| format!("redis://{host}"))
        .collect();
    if sentinels.is_empty() {
        return Err("no Sentinel address".into());
    }
    let mut master_info = RedisConnectionInfo::default().set_db(db);
    if let Some(userinfo) = userinfo {
        let (user, password) = userinfo.split_once(':').unwrap_or(("", userinfo));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| "the user or password is not UTF-8".to_owned())
        };
        if !user.is_empty() {
            master_info = master_info.set_username(decode(user)?);
        }
        if !password.is_empty() {
            master_info = master_info.set_password(decode(password)?);
        }
    }
    let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(master_info);
    SentinelClient::build(
        sentinels,
        master.to_owned(),
        Some(node),
        SentinelServerType::Master,
    )
    .map_err(|e| format!("{:?}", e.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_hosts_a_master_and_optionally_a_password_and_db() {
        for good in [
            "redis+sentinel://127.0.0.1:26379/mymaster",
            "redis+sentinel://:secret@h1:26379,h2:26380/mymaster/2",
            "redis+sentinel://user:secret@h1:26379/mymaster",
        ] {
            assert!(RedisTarget::open(good).is_ok(), "{good}");
        }
        // Its password is redacted like any URL's, in the URL shown and in
        // a client's error that would show it.
        let url = "redis+sentinel://:secret@h1:26379,h2:26380/mymaster";
        assert_eq!(
            crate::backend::redact(url),
            "redis+sentinel://:***@h1:26379,h2:26380/mymaster"
        );
        let endpoint = crate::backend::Endpoint::new(url);
        let error = endpoint.error(std::io::Error::other("auth failed with secret"));
        assert!(!error.to_string().contains("secret"), "{error}");
        for bad in [
            "redis+sentinel://127.0.0.1:26379",
            "redis+sentinel://127.0.0.1:26379/",
            "redis+sentinel:///mymaster",
            "redis+sentinel://h:26379/mymaster/x",
        ] {
            assert!(RedisTarget::open(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_urls_name_seeds_and_optionally_a_password_but_no_database() {
        for good in [
            "redis+cluster://127.0.0.1:7000",
            "redis+cluster://:secret@h1:7000,h2:7001/",
            "redis+cluster://user:secret@h1:7000,h2:7001,h3:7002",
        ] {
            let target = RedisTarget::open(good).expect(good);
            assert!(target.is_cluster(), "{good}");
        }
        let RedisTarget::Cluster(cluster) =
            RedisTarget::open("redis+cluster://user:s%40cret@h1:7000,h2:7001").unwrap()
        else {
            unreachable!()
        };
        assert_eq!(
            cluster.seeds,
            [
                "redis://user:s%40cret@h1:7000",
                "redis://user:s%40cret@h2:7001"
            ]
        );
        assert_eq!(
            crate::backend::redact("redis+cluster://:secret@h1:7000,h2:7001"),
            "redis+cluster://:***@h1:7000,h2:7001"
        );
        for bad in ["redis+cluster://", "redis+cluster://h1:7000/2"] {
            assert!(RedisTarget::open(bad).is_err(), "{bad}");
        }
        assert!(!RedisTarget::open("redis://h1:7000").unwrap().is_cluster());
    }

    #[test]
    fn the_home_node_is_the_master_of_slot_zero() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.into()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let slots = vec![
            vec![Value::Int(5461), Value::Int(10922), node("10.0.0.2", 7001)],
            vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 7000),
                node("10.0.0.4", 7003),
            ],
        ];
        assert_eq!(slot_zero_master(&slots), Some(("10.0.0.1".into(), 7000)));
        assert_eq!(slot_zero_master(&slots[..1]), None);
    }
}
