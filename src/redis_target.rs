//! Where the Redis bus and broker connect: one server by its URL, or the
//! master a Redis Sentinel names, asked again at every (re)connection, so
//! that after a failover the next connection goes to the new master.
//!
//! `redis+sentinel://[[user]:password@]host:port[,host:port...]/MASTER[/DB]`
//! names the Sentinels (their own port, usually 26379) and the master's
//! name in their configuration; the password and the database are the
//! master's. A Sentinel demotes the old master with `CLIENT KILL`, so the
//! connections made to it break and are made again, to the new master.

use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, RedisConnectionInfo, RedisResult};

/// The scheme of a Sentinel-served Redis.
pub(crate) const SENTINEL_SCHEME: &str = "redis+sentinel";

/// One Redis server, or the master of a Sentinel-served group.
#[derive(Clone)]
pub(crate) enum RedisTarget {
    Server(Client),
    Sentinel(Arc<tokio::sync::Mutex<SentinelClient>>),
}

impl RedisTarget {
    /// The target `url` names; the reason when it names none.
    pub(crate) fn open(url: &str) -> Result<RedisTarget, String> {
        match url
            .strip_prefix(SENTINEL_SCHEME)
            .and_then(|r| r.strip_prefix("://"))
        {
            Some(rest) => sentinel(rest)
                .map(|client| RedisTarget::Sentinel(Arc::new(tokio::sync::Mutex::new(client)))),
            None => Client::open(url)
                .map(RedisTarget::Server)
                .map_err(|e| format!("{:?}", e.kind())),
        }
    }

    /// A client for the server, or for the master the Sentinels name now.
    pub(crate) async fn client(&self) -> RedisResult<Client> {
        match self {
            RedisTarget::Server(client) => Ok(client.clone()),
            RedisTarget::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await,
        }
    }

    /// A new multiplexed connection to it.
    pub(crate) async fn multiplexed(&self) -> RedisResult<MultiplexedConnection> {
        self.client()
            .await?
            .get_multiplexed_async_connection()
            .await
    }

    /// A new multiplexed connection to it, configured.
    pub(crate) async fn multiplexed_with(
        &self,
        config: &AsyncConnectionConfig,
    ) -> RedisResult<MultiplexedConnection> {
        self.client()
            .await?
            .get_multiplexed_async_connection_with_config(config)
            .await
    }
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
}
