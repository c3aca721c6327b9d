//! The Redis broker: the Python original's queues (a list named by the
//! bare queue name, `RPUSH` to send), consumed without loss.
//!
//! - Taking moves a message from the head of the queue into a processing
//!   list of the consumer's own (`BLMOVE`), so a message being handled is
//!   always in Redis. It leaves that list only once settled.
//! - Each consumer holds a lease (a key with a time to live, refreshed
//!   while it runs). Consumers return the processing lists of consumers
//!   whose lease expired (a `kill -9`, a lost host) to the head of their
//!   queue, at start and periodically.
//! - A failed attempt moves the message out of the queue's list into a
//!   retry set of our own, keyed by an id, with its attempt count beside it
//!   (never in the body: a Python consumer must see the body as sent), due
//!   after its backoff. Consumers take due retries before new messages.
//! - Dead letters go to the list `{queue}:dead` (the suffix is
//!   configurable) as JSON objects
//!   `{"message", "reason", "attempts", "consumer", "failed_at"}`.
//!
//! On a Redis Cluster (`redis+cluster://host:port[,...]`), every key of a
//! queue hashes to its list's slot, so that each script touches one slot:
//! the list keeps its bare name (the Python original's), and our keys
//! start with that name in braces, a hash tag (`{jobs}:microagent:retry`,
//! dead letters in `{jobs}:dead`), unless the name holds a hash tag of its
//! own (`{orders}.eu`: then its keys are named as on one server).
//!
//! A processing list holds nothing but bodies, as they were pushed: a retry
//! being handled is noted by its id in a list of its own beside it
//! (`retrying:{consumer}`; its body stays in the retry hash), so that no
//! body, whatever its bytes, can pass for our bookkeeping.
//!
//! The only broker code that names the `redis` crate; it plugs into the
//! seam of [`remote`](super::remote), and its consumers are in
//! [`consumer`].

mod consumer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use redis::Script;

use super::error::{BrokerError, DeadLetter};
use super::link::LinkState;
use futures_util::future::BoxFuture;

use super::config::{BrokerConfig, Connector};
use super::delivery::Verdict;
use super::remote::{ConsumerSpec, Destination, RemoteQueues, Source};
use crate::backend::Endpoint;
use crate::redis_target::{Connection, RedisTarget};

#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
impl BrokerConfig {
    /// The Redis broker at `url` (`redis://[:password@]host[:port][/db]`;
    /// `redis+sentinel://host:port[,...]/MASTER` for a Sentinel-served
    /// master; `redis+cluster://host:port[,...]` for a Redis Cluster):
    /// the Python original's queues, consumed without loss (see the
    /// crate docs' broker section).
    pub fn redis(url: &str) -> Result<Self, BrokerError> {
        let endpoint = Endpoint::new(url);
        let client = RedisTarget::open(url).map_err(|reason| BrokerError::Config {
            reason: format!("bad Redis URL {}: {reason}", endpoint.redacted()),
        })?;
        Ok(BrokerConfig::remote(
            "redis",
            endpoint.clone(),
            RedisBroker { endpoint, client },
        ))
    }
}

/// A Redis broker's server (and its URL, for errors).
struct RedisBroker {
    endpoint: Endpoint,
    client: RedisTarget,
}

impl Connector for RedisBroker {
    fn connect(
        &self,
        config: &BrokerConfig,
    ) -> BoxFuture<'static, Result<Arc<dyn RemoteQueues>, BrokerError>> {
        let (endpoint, client) = (self.endpoint.clone(), self.client.clone());
        let (namespace, lease) = (config.namespace.clone(), config.lease);
        let dead_suffix = config.dead_suffix.clone();
        Box::pin(async move {
            let connection = client.connect().await.map_err(|e| failed(&endpoint, e))?;
            Ok(Arc::new(RedisQueues {
                client,
                endpoint,
                namespace,
                dead_suffix,
                lease,
                connection: Mutex::new(connection),
                stale: AtomicBool::new(false),
                state: LinkState::new(true),
            }) as Arc<dyn RemoteQueues>)
        })
    }
}

impl RemoteQueues for RedisQueues {
    fn link(&self) -> &LinkState {
        &self.state
    }

    fn send<'a>(
        &'a self,
        to: Destination<'a>,
        body: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move { self.push(to.queue, &body).await })
    }

    fn send_batch<'a>(
        &'a self,
        to: Destination<'a>,
        bodies: Vec<Vec<u8>>,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move { self.push_all(to.queue, &bodies).await })
    }

    fn length<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(self.queue_length(queue))
    }

    fn dead_letters<'a>(
        &'a self,
        queue: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, BrokerError>> {
        Box::pin(self.read_dead_letters(queue))
    }

    fn requeue_dead<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(self.requeue_dead_letters(queue))
    }

    fn purge_dead<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(self.delete_list(self.dead_key(queue)))
    }

    fn purge<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        // The waiting messages; retries scheduled stay (they are being
        // handled, in a way: their consumer owns their next attempt).
        Box::pin(self.delete_list(self.key(queue)))
    }

    fn open(
        self: Arc<Self>,
        consumer: ConsumerSpec,
    ) -> BoxFuture<'static, Result<Box<dyn Source>, BrokerError>> {
        Box::pin(async move {
            let source = consumer::RedisSource::open(self, (consumer.queue, consumer.name)).await?;
            Ok(Box::new(source) as Box<dyn Source>)
        })
    }
}

/// How long one `BLMOVE` blocks before the consumer looks at retries, its
/// stop and its lease again.
const BLOCK: Duration = Duration::from_secs(1);

/// The Redis side of a broker.
struct RedisQueues {
    client: RedisTarget,
    endpoint: Endpoint,
    /// Keys are `{namespace}{queue}...` (empty: the bare names Python uses).
    namespace: String,
    /// Appended to a queue's name for its dead letters' list.
    dead_suffix: String,
    lease: Duration,
    /// The shared connection; replaced when it broke.
    connection: Mutex<Connection>,
    /// The shared connection broke: make a new one before the next use.
    stale: AtomicBool,
    /// Whether the server is there, and its counts.
    state: LinkState,
}

/// A message taken from a queue: its body, as sent, and the attempts it
/// had before.
#[derive(Debug)]
struct Message {
    body: Arc<[u8]>,
    attempts: u32,
}

impl Message {
    /// A retry, from its envelope in the retry hash.
    fn retried(envelope: &[u8]) -> Message {
        match serde_json::from_slice::<Envelope>(envelope) {
            Ok(envelope) => Message {
                body: envelope.body.into_bytes().into(),
                attempts: envelope.attempts,
            },
            // Not ours (someone wrote to our hash): handed on as it is, so
            // that it is dead-lettered, not lost.
            Err(_) => Message {
                body: envelope.into(),
                attempts: 0,
            },
        }
    }
}

/// One message's settlement, as the `SETTLE` script reads it.
#[derive(Debug)]
struct Settlement {
    /// What happens (`a`, `r`, `l`, `d`) to a first attempt (`f`) or a
    /// retry (`r`).
    verb: &'static str,
    /// The body in the processing list, or the id in the retrying list.
    what: Arc<[u8]>,
    /// Its id in the retry set and hash (empty for a first attempt that
    /// is not retried).
    id: String,
    /// Its envelope (a retry) or dead letter.
    data: Vec<u8>,
    /// When it is due in the retry set, in milliseconds.
    score: i64,
}

impl Settlement {
    /// What `verdict` does to `message` (taken from `origin`) of consumer
    /// `consumer`.
    fn new(consumer: &str, message: Message, origin: Origin, verdict: Verdict) -> Settlement {
        let (what, id, fresh) = match origin {
            Origin::Fresh => (message.body.clone(), String::new(), true),
            Origin::Retry(id) => (Arc::from(id.as_bytes()), id, false),
        };
        let verb = |first: &'static str, retry: &'static str| if fresh { first } else { retry };
        let mut settlement = Settlement {
            verb: verb("af", "ar"),
            what,
            id,
            data: Vec::new(),
            score: 0,
        };
        match verdict {
            Verdict::Ack => {}
            Verdict::Release => {
                settlement.verb = verb("lf", "lr");
                settlement.score = now_ms();
            }
            Verdict::Retry {
                attempts, pause, ..
            } => {
                settlement.verb = verb("rf", "rr");
                if fresh {
                    settlement.id = uuid::Uuid::new_v4().simple().to_string();
                }
                let envelope = Envelope {
                    attempts,
                    body: String::from_utf8_lossy(&message.body).into_owned(),
                };
                settlement.data = serde_json::to_vec(&envelope).unwrap_or_default();
                settlement.score = now_ms() + pause.as_millis() as i64;
            }
            Verdict::Dead { reason, attempts } => {
                settlement.verb = verb("df", "dr");
                settlement.data =
                    DeadLetter::encode(&message.body, &reason, attempts, consumer).into_bytes();
            }
        }
        settlement
    }
}

/// Where a taken message came from, to settle it.
#[derive(Debug)]
enum Origin {
    /// A first attempt: the raw body is in the processing list.
    Fresh,
    /// A retry: its id is in the consumer's retrying list.
    Retry(String),
}

/// One consumer's keys and connection for blocking takes.
struct Taker {
    id: String,
    blocking: Connection,
}

/// Takes up to `ARGV[2]` messages without waiting, in one round trip: due
/// retries first (each id into the retrying list: `'r', id, envelope`),
/// then the queue's head (into the processing list: `'f', body, ''`); when
/// there was nothing, when the next retry is due (`'w', milliseconds, ''`),
/// else nothing.
const TAKE: &str = r"
local most = tonumber(ARGV[2])
local out = {}
local taken = 0
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, most)
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  local envelope = redis.call('HGET', KEYS[2], id)
  if envelope then
    redis.call('RPUSH', KEYS[5], id)
    out[#out + 1] = 'r'
    out[#out + 1] = id
    out[#out + 1] = envelope
    taken = taken + 1
  end
end
while taken < most do
  local body = redis.call('LMOVE', KEYS[4], KEYS[3], 'LEFT', 'RIGHT')
  if not body then break end
  out[#out + 1] = 'f'
  out[#out + 1] = body
  out[#out + 1] = ''
  taken = taken + 1
end
if taken > 0 then return out end
local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #next > 0 then return {'w', next[2], ''} end
return {}
";

/// Settles a batch of one consumer's messages, in one round trip. Five
/// arguments per message: its verb (`a`ck, `r`etry, re`l`ease, `d`ead;
/// then `f` for a first attempt, whose body is in the processing list, or
/// `r` for a retry, whose id is in the retrying list), that body or id,
/// its retry id, its envelope or dead letter, and its score in the retry
/// set. A message is settled only if it is still where its consumer took
/// it to (recovery may have returned it to the queue): a settlement
/// applied twice (its reply lost, sent again) changes nothing the second
/// time. Returns how many were settled.
const SETTLE: &str = r"
local settled = 0
for i = 1, #ARGV, 5 do
  local verb, what, id, data, score = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local fresh = string.sub(verb, 2, 2) == 'f'
  local from = KEYS[2]
  if fresh then from = KEYS[1] end
  if redis.call('LREM', from, 1, what) == 1 then
    settled = settled + 1
    local action = string.sub(verb, 1, 1)
    if action == 'a' then
      if not fresh then redis.call('HDEL', KEYS[5], id) end
    elseif action == 'r' then
      redis.call('HSET', KEYS[5], id, data)
      redis.call('ZADD', KEYS[4], score, id)
    elseif action == 'l' then
      if fresh then
        redis.call('LPUSH', KEYS[3], what)
      else
        redis.call('ZADD', KEYS[4], score, id)
      end
    elseif action == 'd' then
      redis.call('RPUSH', KEYS[6], data)
      if not fresh then redis.call('HDEL', KEYS[5], id) end
    end
  end
end
return settled
";

static SETTLE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SETTLE));

/// Requeues one dead letter: removes it (`ARGV[1]`, as stored) from the
/// dead letters' list and, if it was there, pushes its message (`ARGV[2]`)
/// to the queue.
const REQUEUE: &str = r"
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
";

static REQUEUE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(REQUEUE));

/// Returns a dead consumer's messages (if its lease is gone): the bodies
/// of its processing list to the head of the queue in their order, the
/// retries of its retrying list to the retry set, due now.
const RECOVER: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local moved = 0
while true do
  local body = redis.call('RPOP', KEYS[2])
  if not body then break end
  redis.call('LPUSH', KEYS[3], body)
  moved = moved + 1
end
while true do
  local id = redis.call('LPOP', KEYS[6])
  if not id then break end
  redis.call('ZADD', KEYS[4], ARGV[2], id)
  moved = moved + 1
end
redis.call('SREM', KEYS[5], ARGV[1])
return moved
";

static TAKE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(TAKE));
static RECOVER_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RECOVER));

/// The hash tag of `key` as a Redis Cluster reads it: what is between its
/// first `{` and the first `}` after it, if that is not empty.
fn hash_tag(key: &str) -> Option<&str> {
    let (_, after) = key.split_once('{')?;
    let (tag, _) = after.split_once('}')?;
    (!tag.is_empty()).then_some(tag)
}

/// A Redis error, with the URL's secrets kept out.
fn failed(endpoint: &Endpoint, e: redis::RedisError) -> BrokerError {
    BrokerError::Backend {
        kind: "redis",
        url: endpoint.redacted().to_owned(),
        source: endpoint.error(e),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The envelope of a message waiting for a retry.
#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope {
    attempts: u32,
    body: String,
}

impl RedisQueues {
    fn key(&self, queue: &str) -> String {
        format!("{}{queue}", self.namespace)
    }

    fn keys(&self, queue: &str, what: &str) -> String {
        format!("{}:microagent:{what}", self.stem(queue))
    }

    /// The dead letters' list.
    fn dead_key(&self, queue: &str) -> String {
        format!("{}{}", self.stem(queue), self.dead_suffix)
    }

    /// What a queue's keys start with: the queue's list's name; on a
    /// cluster, that name in braces (unless it holds a hash tag of its
    /// own), so that every key of the queue hashes to the list's slot.
    fn stem(&self, queue: &str) -> String {
        let list = self.key(queue);
        if self.client.is_cluster() && hash_tag(&list).is_none() {
            format!("{{{list}}}")
        } else {
            list
        }
    }

    /// On a cluster, a name with a `}` but no hash tag cannot be put in
    /// braces: its keys would hash elsewhere than its list.
    fn check_name(&self, queue: &str) -> Result<(), BrokerError> {
        let list = self.key(queue);
        if self.client.is_cluster() && hash_tag(&list).is_none() && list.contains('}') {
            return Err(BrokerError::Name {
                queue: queue.to_owned(),
                reason: "on a Redis Cluster, a name with `}` must hold a hash tag (`{...}`)",
            });
        }
        Ok(())
    }

    fn noted<T>(&self, result: redis::RedisResult<T>) -> Result<T, BrokerError> {
        match result {
            Ok(value) => {
                self.state.set_up(true);
                Ok(value)
            }
            Err(e) => {
                // A master demoted by a failover answers READONLY: the
                // next connection asks the Sentinels again.
                let demoted =
                    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly);
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || demoted {
                    self.state.set_up(false);
                    self.stale.store(true, Ordering::Relaxed);
                }
                self.state.failed();
                Err(failed(&self.endpoint, e))
            }
        }
    }

    /// The shared connection, made anew when the last one broke.
    async fn connection(&self) -> Result<Connection, BrokerError> {
        if self.stale.swap(false, Ordering::Relaxed) {
            match self.client.connect().await {
                Ok(fresh) => {
                    *self
                        .connection
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = fresh;
                }
                Err(e) => {
                    self.stale.store(true, Ordering::Relaxed);
                    self.state.set_up(false);
                    self.state.failed();
                    return Err(failed(&self.endpoint, e));
                }
            }
        }
        Ok(self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone())
    }

    async fn push(&self, queue: &str, body: &[u8]) -> Result<(), BrokerError> {
        let mut connection = self.connection().await?;
        let result = redis::cmd("RPUSH")
            .arg(self.key(queue))
            .arg(body)
            .query_async::<i64>(&mut connection)
            .await;
        self.noted(result).map(drop)
    }

    /// Pushes every body in one `RPUSH`: one round trip, all or none.
    async fn push_all(&self, queue: &str, bodies: &[Vec<u8>]) -> Result<(), BrokerError> {
        if bodies.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection().await?;
        let mut push = redis::cmd("RPUSH");
        push.arg(self.key(queue));
        for body in bodies {
            push.arg(body.as_slice());
        }
        let result = push.query_async::<i64>(&mut connection).await;
        self.noted(result).map(drop)
    }

    async fn queue_length(&self, queue: &str) -> Result<usize, BrokerError> {
        let mut connection = self.connection().await?;
        let result = redis::cmd("LLEN")
            .arg(self.key(queue))
            .query_async::<usize>(&mut connection)
            .await;
        self.noted(result)
    }

    /// The dead letters of `queue` as stored, oldest first.
    async fn dead_entries(&self, queue: &str) -> Result<Vec<Vec<u8>>, BrokerError> {
        let mut connection = self.connection().await?;
        let result = redis::cmd("LRANGE")
            .arg(self.dead_key(queue))
            .arg(0)
            .arg(-1)
            .query_async::<Vec<Vec<u8>>>(&mut connection)
            .await;
        self.noted(result)
    }

    async fn read_dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>, BrokerError> {
        let entries = self.dead_entries(queue).await?;
        Ok(entries
            .iter()
            .map(|entry| DeadLetter::decode(queue, entry))
            .collect())
    }

    /// Moves one dead letter (as stored) back to its queue as `body`,
    /// atomically: `false` when someone else took it first.
    async fn requeue_one(
        &self,
        queue: &str,
        letter: &[u8],
        body: &[u8],
    ) -> Result<bool, BrokerError> {
        self.check_name(queue)?;
        let mut connection = self.connection().await?;
        let result = REQUEUE_SCRIPT
            .key(self.dead_key(queue))
            .key(self.key(queue))
            .arg(letter)
            .arg(body)
            .invoke_async::<i64>(&mut connection)
            .await;
        Ok(self.noted(result)? == 1)
    }

    async fn requeue_dead_letters(&self, queue: &str) -> Result<usize, BrokerError> {
        let mut moved = 0;
        for letter in self.dead_entries(queue).await? {
            let message = DeadLetter::decode(queue, &letter).message;
            if self
                .requeue_one(queue, &letter, &DeadLetter::body_of(&message))
                .await?
            {
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// Deletes a list; how many it held.
    async fn delete_list(&self, key: String) -> Result<usize, BrokerError> {
        let mut connection = self.connection().await?;
        let result = redis::pipe()
            .atomic()
            .cmd("LLEN")
            .arg(&key)
            .cmd("DEL")
            .arg(&key)
            .ignore()
            .query_async::<(usize,)>(&mut connection)
            .await;
        self.noted(result).map(|(count,)| count)
    }

    /// A connection of its own for a consumer's blocking takes.
    async fn blocking(&self) -> Result<Connection, BrokerError> {
        let blocking = self.client.connect_blocking(BLOCK * 5).await;
        self.noted(blocking)
    }

    /// A new blocking connection for `taker` (the old one failed).
    async fn reconnect(&self, taker: &mut Taker) -> Result<(), BrokerError> {
        taker.blocking = self.blocking().await?;
        Ok(())
    }

    /// A new consumer of `queue`: registered, with its lease, and with the
    /// processing lists of dead consumers returned first.
    async fn taker(&self, queue: &str) -> Result<Taker, BrokerError> {
        self.check_name(queue)?;
        let taker = Taker {
            id: uuid::Uuid::new_v4().simple().to_string(),
            blocking: self.blocking().await?,
        };
        self.renew_id(queue, &taker.id).await?;
        let mut connection = self.connection().await?;
        let result = redis::cmd("SADD")
            .arg(self.keys(queue, "consumers"))
            .arg(&taker.id)
            .query_async::<i64>(&mut connection)
            .await;
        self.noted(result)?;
        self.recover(queue).await?;
        Ok(taker)
    }

    /// How often a consumer renews its lease (and looks for dead ones).
    fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    /// Refreshes the lease of consumer `id`.
    async fn renew_id(&self, queue: &str, id: &str) -> Result<(), BrokerError> {
        let mut connection = self.connection().await?;
        let millis = self.lease.as_millis().max(1) as u64;
        let result = redis::cmd("SET")
            .arg(self.keys(queue, &format!("lease:{id}")))
            .arg(1)
            .arg("PX")
            .arg(millis)
            .query_async::<()>(&mut connection)
            .await;
        self.noted(result)
    }

    /// Returns the processing lists of consumers whose lease expired.
    async fn recover(&self, queue: &str) -> Result<usize, BrokerError> {
        let mut connection = self.connection().await?;
        let result = redis::cmd("SMEMBERS")
            .arg(self.keys(queue, "consumers"))
            .query_async::<Vec<String>>(&mut connection)
            .await;
        let consumers = self.noted(result)?;
        let script = &*RECOVER_SCRIPT;
        let mut recovered = 0;
        for id in consumers {
            let result = script
                .key(self.keys(queue, &format!("lease:{id}")))
                .key(self.keys(queue, &format!("processing:{id}")))
                .key(self.key(queue))
                .key(self.keys(queue, "retry"))
                .key(self.keys(queue, "consumers"))
                .key(self.keys(queue, &format!("retrying:{id}")))
                .arg(&id)
                .arg(now_ms())
                .invoke_async::<i64>(&mut connection)
                .await;
            let moved = self.noted(result)?;
            if moved > 0 {
                log::warn!(
                    target: crate::LOG_TARGET,
                    "broker: returned {moved} message(s) of a consumer of `{queue}` whose lease expired"
                );
                recovered += moved as usize;
            }
        }
        Ok(recovered)
    }

    /// Takes up to `most` messages: due retries first, then new ones, in
    /// one round trip; waits for one when there is none. The wait ends by
    /// the time the next retry is due, and lasts at most `longest` (and
    /// `BLOCK`): a consumer with messages in flight passes its backoff, so
    /// that a retry it schedules meanwhile is not due before it looks.
    async fn take(
        &self,
        queue: &str,
        taker: &mut Taker,
        (most, longest): (usize, Duration),
    ) -> Result<Vec<(Message, Origin)>, BrokerError> {
        let processing = self.keys(queue, &format!("processing:{}", taker.id));
        let mut connection = self.connection().await?;
        let result = TAKE_SCRIPT
            .key(self.keys(queue, "retry"))
            .key(self.keys(queue, "messages"))
            .key(&processing)
            .key(self.key(queue))
            .key(self.keys(queue, &format!("retrying:{}", taker.id)))
            .arg(now_ms())
            .arg(most.max(1))
            .invoke_async::<Vec<Vec<u8>>>(&mut connection)
            .await;
        let answer = self.noted(result)?;
        let mut taken = Vec::with_capacity(answer.len() / 3);
        let mut block = longest.min(BLOCK);
        for triple in answer.chunks(3) {
            match triple {
                [kind, id, envelope] if kind == b"r" => {
                    let id = String::from_utf8_lossy(id).into_owned();
                    taken.push((Message::retried(envelope), Origin::Retry(id)));
                }
                [kind, body, _] if kind == b"f" => {
                    let message = Message {
                        body: body.as_slice().into(),
                        attempts: 0,
                    };
                    taken.push((message, Origin::Fresh));
                }
                [kind, due, _] if kind == b"w" => {
                    let due = std::str::from_utf8(due)
                        .ok()
                        .and_then(|due| due.parse::<f64>().ok())
                        .unwrap_or(0.0);
                    let until_due = (due - now_ms() as f64).max(0.0);
                    block = block.min(Duration::from_secs_f64(until_due / 1000.0));
                }
                _ => {}
            }
        }
        // Redis blocks for ever on 0, and counts in milliseconds.
        if !taken.is_empty() || block < Duration::from_millis(1) {
            return Ok(taken);
        }
        let result = redis::cmd("BLMOVE")
            .arg(self.key(queue))
            .arg(&processing)
            .arg("LEFT")
            .arg("RIGHT")
            .arg(block.as_secs_f64())
            .query_async::<Option<Vec<u8>>>(&mut taker.blocking)
            .await;
        Ok(self
            .noted(result)?
            .into_iter()
            .map(|body| {
                let taken = Message {
                    body: body.into(),
                    attempts: 0,
                };
                (taken, Origin::Fresh)
            })
            .collect())
    }

    /// Settles a batch of consumer `taker_id`'s messages in one round trip:
    /// first attempts handled are plain `LREM`s (one `LREM` is atomic, and
    /// a script costs Redis several times more per message), everything
    /// else goes through the `SETTLE` script, pipelined behind them.
    async fn settle(
        &self,
        queue: &str,
        taker_id: &str,
        settlements: &[Settlement],
    ) -> Result<(), BrokerError> {
        let processing = self.keys(queue, &format!("processing:{taker_id}"));
        let (acks, others): (Vec<&Settlement>, Vec<&Settlement>) =
            settlements.iter().partition(|s| s.verb == "af");
        let mut connection = self.connection().await?;
        let mut other = connection.clone();
        let removing = async {
            if acks.is_empty() {
                return Ok(());
            }
            let mut pipe = redis::pipe();
            for ack in &acks {
                pipe.cmd("LREM")
                    .arg(&processing)
                    .arg(1)
                    .arg(ack.what.as_ref())
                    .ignore();
            }
            pipe.query_async::<()>(&mut other).await
        };
        let scripted = async {
            if others.is_empty() {
                return Ok(0);
            }
            let mut invocation = SETTLE_SCRIPT.prepare_invoke();
            invocation
                .key(&processing)
                .key(self.keys(queue, &format!("retrying:{taker_id}")))
                .key(self.key(queue))
                .key(self.keys(queue, "retry"))
                .key(self.keys(queue, "messages"))
                .key(self.dead_key(queue));
            for settlement in &others {
                invocation
                    .arg(settlement.verb)
                    .arg(settlement.what.as_ref())
                    .arg(&settlement.id)
                    .arg(settlement.data.as_slice())
                    .arg(settlement.score);
            }
            invocation.invoke_async::<i64>(&mut connection).await
        };
        let (removed, scripted) = futures_util::future::join(removing, scripted).await;
        self.noted(removed)?;
        self.noted(scripted).map(drop)
    }

    /// A consumer that stopped, its messages settled: its lease goes, and
    /// whatever is left in its processing list (a take cut short by the
    /// stop) goes back to the queue with its registration.
    async fn retire(&self, queue: &str, taker: &Taker) -> Result<(), BrokerError> {
        let mut connection = self.connection().await?;
        let result = redis::cmd("DEL")
            .arg(self.keys(queue, &format!("lease:{}", taker.id)))
            .query_async::<()>(&mut connection)
            .await;
        self.noted(result)?;
        self.recover(queue).await.map(drop)
    }
}

impl Taker {
    fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_are_read_as_a_cluster_reads_them() {
        assert_eq!(hash_tag("jobs"), None);
        assert_eq!(hash_tag("{jobs}:dead"), Some("jobs"));
        assert_eq!(hash_tag("a{b}c{d}"), Some("b"));
        assert_eq!(hash_tag("x{}y{z}"), None);
        assert_eq!(hash_tag("{a{b}"), Some("a{b"));
        assert_eq!(hash_tag("a}b"), None);
    }

    /// The broker's Redis side on the shared Redis (`REDIS_URL`), under a
    /// namespace of its own.
    async fn queues() -> RedisQueues {
        let url = std::env::var("REDIS_URL").expect("this test needs REDIS_URL");
        let client = RedisTarget::open(&url).expect("a Redis URL");
        let connection = client.connect().await.expect("Redis is reachable");
        RedisQueues {
            client,
            endpoint: Endpoint::new(&url),
            namespace: format!("U{}:", uuid::Uuid::new_v4().simple()),
            dead_suffix: ":dead".to_owned(),
            lease: Duration::from_secs(30),
            connection: Mutex::new(connection),
            stale: AtomicBool::new(false),
            state: LinkState::new(true),
        }
    }

    async fn count(queues: &RedisQueues, command: &str, key: String) -> usize {
        let mut connection = queues.connection().await.unwrap();
        redis::cmd(command)
            .arg(key)
            .query_async(&mut connection)
            .await
            .unwrap()
    }

    /// A settlement whose reply was lost is sent again (`persist`): the
    /// second time it finds its message gone from the consumer's list and
    /// changes nothing, so a retry is scheduled once and a dead letter
    /// written once.
    #[actix_rt::test]
    #[cfg_attr(not(service_redis), ignore = "needs REDIS_URL")]
    async fn a_settlement_applied_twice_changes_nothing_the_second_time() {
        let queues = queues().await;
        let mut taker = queues.taker("jobs").await.unwrap();
        let bodies = [br#"{"n":1}"#.to_vec(), br#"{"n":2}"#.to_vec()];
        queues.push_all("jobs", &bodies).await.unwrap();
        let mut taken = queues
            .take("jobs", &mut taker, (2, Duration::ZERO))
            .await
            .unwrap()
            .into_iter();
        let ((first, first_from), (second, second_from)) =
            (taken.next().unwrap(), taken.next().unwrap());
        let retry = Verdict::Retry {
            attempts: 1,
            pause: Duration::from_secs(60),
            reason: "refused".into(),
        };
        let dead = Verdict::Dead {
            reason: "refused".into(),
            attempts: 3,
        };
        let settlements = [
            Settlement::new("worker", first, first_from, retry),
            Settlement::new("worker", second, second_from, dead),
        ];
        for _ in 0..2 {
            queues
                .settle("jobs", taker.id(), &settlements)
                .await
                .unwrap();
        }
        let processing = queues.keys("jobs", &format!("processing:{}", taker.id()));
        assert_eq!(count(&queues, "LLEN", processing).await, 0);
        assert_eq!(
            count(&queues, "ZCARD", queues.keys("jobs", "retry")).await,
            1
        );
        assert_eq!(
            count(&queues, "HLEN", queues.keys("jobs", "messages")).await,
            1
        );
        assert_eq!(count(&queues, "LLEN", queues.dead_key("jobs")).await, 1);
        assert_eq!(count(&queues, "LLEN", queues.key("jobs")).await, 0);
        // Its keys go with it.
        queues.retire("jobs", &taker).await.unwrap();
        let mut connection = queues.connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", queues.namespace))
            .query_async(&mut connection)
            .await
            .unwrap();
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(keys)
                .query_async::<()>(&mut connection)
                .await
                .unwrap();
        }
    }
}
