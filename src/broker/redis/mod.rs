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

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script};

use super::error::{BrokerError, DeadLetter};
use futures_util::future::BoxFuture;

use super::config::{BrokerConfig, Connector};
use super::remote::{ConsumerSpec, Destination, RemoteQueues, Source};
use crate::backend::Endpoint;

#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
impl BrokerConfig {
    /// The Redis broker at `url` (`redis://[:password@]host[:port][/db]`):
    /// the Python original's queues, consumed without loss (see the
    /// crate docs' broker section).
    pub fn redis(url: &str) -> Result<Self, BrokerError> {
        let endpoint = Endpoint::new(url);
        let client = redis::Client::open(url).map_err(|e| BrokerError::Config {
            reason: format!("bad Redis URL {}: {:?}", endpoint.redacted(), e.kind()),
        })?;
        Ok(BrokerConfig::remote(
            "redis",
            endpoint.clone(),
            RedisBroker { endpoint, client },
        ))
    }
}

/// A Redis broker's client (and its URL, for errors).
struct RedisBroker {
    endpoint: Endpoint,
    client: redis::Client,
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
            let connection = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| failed(&endpoint, e))?;
            Ok(Arc::new(RedisQueues {
                client,
                endpoint,
                namespace,
                dead_suffix,
                lease,
                connection: Mutex::new(connection),
                stale: AtomicBool::new(false),
                up: AtomicBool::new(true),
            }) as Arc<dyn RemoteQueues>)
        })
    }
}

impl RemoteQueues for RedisQueues {
    fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn send<'a>(
        &'a self,
        to: Destination<'a>,
        body: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move { self.push(to.queue, &body).await })
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
    client: redis::Client,
    endpoint: Endpoint,
    /// Keys are `{namespace}{queue}...` (empty: the bare names Python uses).
    namespace: String,
    /// Appended to a queue's name for its dead letters' list.
    dead_suffix: String,
    lease: Duration,
    /// The shared connection; replaced when it broke.
    connection: Mutex<MultiplexedConnection>,
    /// The shared connection broke: make a new one before the next use.
    stale: AtomicBool,
    up: AtomicBool,
}

/// A message taken from a queue: its body, as sent, and the attempts it
/// had before.
#[derive(Debug)]
struct Message {
    body: Arc<[u8]>,
    attempts: u32,
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
    blocking: MultiplexedConnection,
}

/// Takes without waiting, in one round trip: a due retry first (its id
/// into the retrying list: `{'r', id, envelope}`), else the queue's head
/// (into the processing list: `{'f', body}`), else when the next retry is
/// due (`{'w', milliseconds}`), else nothing.
const TAKE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
if #due > 0 then
  local id = due[1]
  redis.call('ZREM', KEYS[1], id)
  local envelope = redis.call('HGET', KEYS[2], id)
  if envelope then
    redis.call('RPUSH', KEYS[5], id)
    return {'r', id, envelope}
  end
end
local body = redis.call('LMOVE', KEYS[4], KEYS[3], 'LEFT', 'RIGHT')
if body then return {'f', body} end
local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #next > 0 then return {'w', next[2]} end
return false
";

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
        format!("{}{queue}:microagent:{what}", self.namespace)
    }

    /// The dead letters' list.
    fn dead_key(&self, queue: &str) -> String {
        format!("{}{queue}{}", self.namespace, self.dead_suffix)
    }

    fn noted<T>(&self, result: redis::RedisResult<T>) -> Result<T, BrokerError> {
        match result {
            Ok(value) => {
                self.up.store(true, Ordering::Relaxed);
                Ok(value)
            }
            Err(e) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    self.up.store(false, Ordering::Relaxed);
                    self.stale.store(true, Ordering::Relaxed);
                }
                Err(failed(&self.endpoint, e))
            }
        }
    }

    /// The shared connection, made anew when the last one broke.
    async fn connection(&self) -> Result<MultiplexedConnection, BrokerError> {
        if self.stale.swap(false, Ordering::Relaxed) {
            match self.client.get_multiplexed_async_connection().await {
                Ok(fresh) => {
                    *self
                        .connection
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = fresh;
                }
                Err(e) => {
                    self.stale.store(true, Ordering::Relaxed);
                    self.up.store(false, Ordering::Relaxed);
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

    async fn queue_length(&self, queue: &str) -> Result<usize, BrokerError> {
        let mut connection = self.connection().await?;
        let result = redis::cmd("LLEN")
            .arg(self.key(queue))
            .query_async::<usize>(&mut connection)
            .await;
        self.noted(result)
    }

    async fn read_dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>, BrokerError> {
        let mut connection = self.connection().await?;
        let result = redis::cmd("LRANGE")
            .arg(self.dead_key(queue))
            .arg(0)
            .arg(-1)
            .query_async::<Vec<Vec<u8>>>(&mut connection)
            .await;
        let entries = self.noted(result)?;
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
        let mut connection = self.connection().await?;
        let result = redis::cmd("LRANGE")
            .arg(self.dead_key(queue))
            .arg(0)
            .arg(-1)
            .query_async::<Vec<Vec<u8>>>(&mut connection)
            .await;
        let mut moved = 0;
        for letter in self.noted(result)? {
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
    async fn blocking(&self) -> Result<MultiplexedConnection, BrokerError> {
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(BLOCK * 5));
        let blocking = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await;
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

    /// Takes the next message: a due retry first, else a new one, waiting
    /// for one when the queue is empty (`None` when nothing came). The wait
    /// ends by the time the next retry is due, and lasts at most `longest`
    /// (and `BLOCK`): a consumer with messages in flight passes its backoff,
    /// so that a retry it schedules meanwhile is not due before it looks.
    async fn take(
        &self,
        queue: &str,
        taker: &mut Taker,
        longest: Duration,
    ) -> Result<Option<(Message, Origin)>, BrokerError> {
        let processing = self.keys(queue, &format!("processing:{}", taker.id));
        let mut connection = self.connection().await?;
        let result = TAKE_SCRIPT
            .key(self.keys(queue, "retry"))
            .key(self.keys(queue, "messages"))
            .key(&processing)
            .key(self.key(queue))
            .key(self.keys(queue, &format!("retrying:{}", taker.id)))
            .arg(now_ms())
            .invoke_async::<Option<Vec<Vec<u8>>>>(&mut connection)
            .await;
        let taken = self.noted(result)?;
        match taken.as_deref() {
            Some([kind, id, envelope]) if kind == b"r" => {
                let id = String::from_utf8_lossy(id).into_owned();
                let taken = match serde_json::from_slice::<Envelope>(envelope) {
                    Ok(envelope) => Message {
                        body: envelope.body.into_bytes().into(),
                        attempts: envelope.attempts,
                    },
                    // Not ours (someone wrote to our hash): handed on as it
                    // is, so that it is dead-lettered, not lost.
                    Err(_) => Message {
                        body: envelope.as_slice().into(),
                        attempts: 0,
                    },
                };
                return Ok(Some((taken, Origin::Retry(id))));
            }
            Some([kind, body]) if kind == b"f" => {
                let taken = Message {
                    body: body.as_slice().into(),
                    attempts: 0,
                };
                return Ok(Some((taken, Origin::Fresh)));
            }
            _ => {}
        }
        let mut block = longest.min(BLOCK);
        if let Some([kind, due]) = taken.as_deref() {
            if kind == b"w" {
                let due = std::str::from_utf8(due)
                    .ok()
                    .and_then(|due| due.parse::<f64>().ok())
                    .unwrap_or(0.0);
                let until_due = (due - now_ms() as f64).max(0.0);
                block = block.min(Duration::from_secs_f64(until_due / 1000.0));
            }
        }
        // Redis blocks for ever on 0, and counts in milliseconds.
        if block < Duration::from_millis(1) {
            return Ok(None);
        }
        let result = redis::cmd("BLMOVE")
            .arg(self.key(queue))
            .arg(&processing)
            .arg("LEFT")
            .arg("RIGHT")
            .arg(block.as_secs_f64())
            .query_async::<Option<Vec<u8>>>(&mut taker.blocking)
            .await;
        Ok(self.noted(result)?.map(|body| {
            let taken = Message {
                body: body.into(),
                attempts: 0,
            };
            (taken, Origin::Fresh)
        }))
    }

    /// A pipeline that starts by taking a settled message out of its
    /// consumer's processing list, or its id out of the retrying list (in a
    /// transaction when `atomic`).
    fn settling(
        &self,
        queue: &str,
        taker_id: &str,
        taken: &Message,
        origin: &Origin,
        atomic: bool,
    ) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        if atomic {
            pipe.atomic();
        }
        match origin {
            Origin::Fresh => pipe
                .cmd("LREM")
                .arg(self.keys(queue, &format!("processing:{taker_id}")))
                .arg(1)
                .arg(taken.body.as_ref()),
            Origin::Retry(id) => pipe
                .cmd("LREM")
                .arg(self.keys(queue, &format!("retrying:{taker_id}")))
                .arg(1)
                .arg(id),
        }
        .ignore();
        pipe
    }

    /// Runs a settlement's pipeline on the shared connection.
    async fn apply(&self, pipe: redis::Pipeline) -> Result<(), BrokerError> {
        let mut connection = self.connection().await?;
        let result = pipe.query_async::<()>(&mut connection).await;
        self.noted(result)
    }

    /// Settles a handled message: gone from the processing list.
    async fn ack(
        &self,
        queue: &str,
        taker_id: &str,
        taken: &Message,
        origin: &Origin,
    ) -> Result<(), BrokerError> {
        // One LREM is atomic by itself: a transaction only for a retry.
        let atomic = matches!(origin, Origin::Retry(_));
        let mut pipe = self.settling(queue, taker_id, taken, origin, atomic);
        if let Origin::Retry(id) = origin {
            pipe.cmd("HDEL")
                .arg(self.keys(queue, "messages"))
                .arg(id)
                .ignore();
        }
        self.apply(pipe).await
    }

    /// A failed attempt: into the retry set, due after `pause`, with its
    /// attempt count.
    async fn retry(
        &self,
        queue: &str,
        taker_id: &str,
        taken: &Message,
        origin: &Origin,
        attempts: u32,
        pause: Duration,
    ) -> Result<(), BrokerError> {
        let id = match origin {
            Origin::Fresh => uuid::Uuid::new_v4().simple().to_string(),
            Origin::Retry(id) => id.clone(),
        };
        let envelope = Envelope {
            attempts,
            body: String::from_utf8_lossy(&taken.body).into_owned(),
        };
        let envelope = serde_json::to_string(&envelope).unwrap_or_default();
        let due = now_ms() + pause.as_millis() as i64;
        let mut pipe = self.settling(queue, taker_id, taken, origin, true);
        pipe.cmd("HSET")
            .arg(self.keys(queue, "messages"))
            .arg(&id)
            .arg(envelope)
            .ignore()
            .cmd("ZADD")
            .arg(self.keys(queue, "retry"))
            .arg(due)
            .arg(&id)
            .ignore();
        self.apply(pipe).await
    }

    /// Not handled (its agent was stopping): back to where it came from,
    /// as it was.
    async fn release(
        &self,
        queue: &str,
        taker_id: &str,
        taken: &Message,
        origin: &Origin,
    ) -> Result<(), BrokerError> {
        let mut pipe = self.settling(queue, taker_id, taken, origin, true);
        match origin {
            Origin::Fresh => pipe
                .cmd("LPUSH")
                .arg(self.key(queue))
                .arg(taken.body.as_ref())
                .ignore(),
            Origin::Retry(id) => pipe
                .cmd("ZADD")
                .arg(self.keys(queue, "retry"))
                .arg(now_ms())
                .arg(id)
                .ignore(),
        };
        self.apply(pipe).await
    }

    /// Dead-letters a message with the reason.
    #[allow(clippy::too_many_arguments)]
    async fn dead(
        &self,
        queue: &str,
        taker_id: &str,
        consumer: &str,
        taken: &Message,
        origin: &Origin,
        reason: &str,
        attempts: u32,
    ) -> Result<(), BrokerError> {
        let letter = DeadLetter::encode(&taken.body, reason, attempts, consumer);
        let mut pipe = self.settling(queue, taker_id, taken, origin, true);
        pipe.cmd("RPUSH")
            .arg(self.dead_key(queue))
            .arg(letter)
            .ignore();
        if let Origin::Retry(id) = origin {
            pipe.cmd("HDEL")
                .arg(self.keys(queue, "messages"))
                .arg(id)
                .ignore();
        }
        self.apply(pipe).await
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
