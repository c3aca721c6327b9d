//! The Kafka broker: a queue is a topic of the same name, its messages the
//! JSON objects every backend carries (the Python original's Kafka broker
//! reads and writes the same values), consumed by a consumer group.
//!
//! - **Sending** waits for the delivery report (`acks=all`, the idempotent
//!   producer). A message without a key goes where every message without a
//!   key goes (the `consistent` partitioner: one partition), so a queue
//!   keeps its send order as the other backends do; `send_keyed` gives a
//!   key: one key's messages keep their order in one partition, and keys
//!   spread over the partitions (and the group's consumers).
//! - **Consuming**: the consumers of a queue are one consumer group (named
//!   after the queue's topic unless `BrokerConfig::group` says otherwise).
//!   An offset is committed only once every message before it in its
//!   partition is settled: handled, handed to a retry, or dead-lettered.
//!   A crash in between delivers again, never loses.
//! - **Retries** do not block the partition: a failed message goes to the
//!   topic `{queue}.retry` with its attempt count and due time in headers
//!   (the Python side ignores headers), and the queue's consumers take it
//!   again once due. Its offset is committed once the retry topic has it.
//! - **Dead letters** go to `{queue}{suffix}` (`jobs.dead` with the default
//!   suffix: a `:` in the suffix is written `.`, which topic names allow)
//!   as the JSON objects the other backends keep. What has been read of
//!   them (requeued or purged) is the committed offset of the group named
//!   after the dead letters' topic.
//! - **Rebalances**: partitions the group takes from a consumer are given
//!   up once their messages in flight settled (up to the lease) and were
//!   committed, so their next owner starts after them.
//! - **Lease**: the broker's lease is the consumers' session timeout (at
//!   least 2 s) with the classic group protocol (with KIP-848's consumer
//!   protocol, `?group.protocol=consumer`, the servers set it); a
//!   consumer that goes silent (killed) holds its partitions that long.
//! - **Length** is what waits on the queue's topic: per partition, from
//!   the group's committed offset, or from after the last message this
//!   process's consumers took when that is further, to the end. (Messages
//!   a consumer of another process has taken and not settled count as
//!   waiting.)
//!
//! The only broker code that names `rdkafka`; its consumers are in
//! [`consumer`].

mod consumer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::config::{BrokerConfig, Connector};
use super::error::{BrokerError, DeadLetter};
use super::link::LinkState;
use super::remote::{ConsumerSpec, Destination, RemoteQueues, Source};
use crate::backend::Endpoint;

/// The header of a message's W3C trace context.
const TRACEPARENT: &str = "traceparent";
/// The header of a retry's attempts so far.
const ATTEMPTS: &str = "microagent-attempts";
/// The header of a retry's due time, in Unix milliseconds.
const DUE: &str = "microagent-due";

/// How long a send may wait for its delivery report, and an
/// administrative request (metadata, offsets) for its answer.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg_attr(docsrs, doc(cfg(feature = "kafka")))]
impl BrokerConfig {
    /// The Kafka broker at `url` (`kafka://host:port[,host:port...]`, the
    /// bootstrap servers, optionally `?group.protocol=consumer` for Apache
    /// Kafka 4's consumer rebalance protocol): queues as topics, consumed
    /// by consumer groups (see the crate docs' broker section and
    /// `docs/broker.md`).
    pub fn kafka(url: &str) -> Result<Self, BrokerError> {
        let endpoint = Endpoint::new(url);
        let servers = Servers::parse(url).map_err(|reason| BrokerError::Config {
            reason: format!("bad Kafka URL {}: {reason}", endpoint.redacted()),
        })?;
        Ok(BrokerConfig::remote(
            "kafka",
            endpoint.clone(),
            KafkaBroker { endpoint, servers },
        ))
    }
}

/// How a group's members agree on who consumes which partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GroupProtocol {
    /// The classic protocol: members rejoin and a leader assigns; the
    /// members' session timeout is the lease.
    Classic,
    /// Apache Kafka 4's consumer protocol (KIP-848): the servers assign,
    /// partition by partition; they also set the session timeout.
    Consumer,
}

/// What a `kafka://` URL says: the bootstrap servers, and the group
/// protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Servers {
    bootstrap: String,
    protocol: GroupProtocol,
}

impl Servers {
    /// Reads `kafka://host:port[,host:port...][/][?group.protocol=P]`.
    fn parse(url: &str) -> Result<Servers, String> {
        let rest = url
            .strip_prefix("kafka://")
            .ok_or("expected kafka://host:port[,...]")?;
        let (hosts, query) = rest.split_once('?').unwrap_or((rest, ""));
        let hosts = hosts.strip_suffix('/').unwrap_or(hosts);
        if hosts.contains('@') {
            return Err("credentials (SASL) are not supported yet".into());
        }
        if hosts.contains('/') {
            return Err("expected kafka://host:port[,...] and no path".into());
        }
        if hosts.split(',').any(|host| host.is_empty()) {
            return Err("an empty server address".into());
        }
        let protocol = match query {
            "" | "group.protocol=classic" => GroupProtocol::Classic,
            "group.protocol=consumer" => GroupProtocol::Consumer,
            other => {
                return Err(format!(
                    "the one option is group.protocol=classic or group.protocol=consumer, found `{other}`"
                ))
            }
        };
        Ok(Servers {
            bootstrap: hosts.to_owned(),
            protocol,
        })
    }
}

/// A Kafka broker's servers (and its URL, for errors).
struct KafkaBroker {
    endpoint: Endpoint,
    servers: Servers,
}

impl Connector for KafkaBroker {
    fn connect(
        &self,
        config: &BrokerConfig,
    ) -> BoxFuture<'static, Result<Arc<dyn RemoteQueues>, BrokerError>> {
        let queues = KafkaQueues::new(self.endpoint.clone(), self.servers.clone(), config);
        let connect_timeout = config.connect_timeout;
        Box::pin(async move {
            let queues = queues?;
            // The servers answer (the brokers' list), or the connection
            // fails here, as the other backends' do.
            let client = queues.producer.clone();
            queues
                .blocking(move || {
                    client
                        .client()
                        .fetch_metadata(None, connect_timeout)
                        .map(drop)
                })
                .await?;
            Ok(Arc::new(queues) as Arc<dyn RemoteQueues>)
        })
    }
}

/// The Kafka side of a broker.
struct KafkaQueues {
    endpoint: Endpoint,
    /// The bootstrap servers, and how the consumers join their groups.
    servers: Servers,
    /// Topics are `{namespace}{queue}`.
    namespace: String,
    /// Appended to a queue's topic for its dead letters' topic.
    dead_suffix: String,
    producer: FutureProducer,
    state: LinkState,
    /// Per partition this process's consumers took from, the offset after
    /// the last one taken: what waits starts there.
    taken: Taken,
    /// The consumers' session timeout (with the classic protocol): how
    /// long the group waits for a consumer that went silent (killed)
    /// before its partitions, and the messages it had not settled, go to
    /// the others. Also how long a rebalance waits for the messages in
    /// flight of the partitions it takes from a consumer.
    lease: Duration,
    /// The consumers' group, `{queue}` standing for the queue's topic.
    group: String,
}

/// A topic's partition.
type Place = (String, i32);

/// Per topic and partition, the offset after the last message taken.
type Taken = Arc<Mutex<HashMap<Place, i64>>>;

/// A Kafka error, with the URL's secrets kept out.
fn failed(endpoint: &Endpoint, e: impl std::error::Error + Send + Sync + 'static) -> BrokerError {
    BrokerError::Backend {
        kind: "kafka",
        url: endpoint.redacted().to_owned(),
        source: endpoint.error(e),
    }
}

/// Whether `e` says the servers could not be reached (rather than that
/// they refused the request).
fn unreachable(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::NetworkException
        )
    )
}

/// Unix time in milliseconds.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl KafkaQueues {
    /// The Kafka side of a broker at `servers`, set up as `config` says
    /// (its producer made; nothing asked of the servers yet).
    fn new(
        endpoint: Endpoint,
        servers: Servers,
        config: &BrokerConfig,
    ) -> Result<KafkaQueues, BrokerError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &servers.bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "consistent")
            .set("linger.ms", "1")
            .create()
            .map_err(|e| failed(&endpoint, e))?;
        Ok(KafkaQueues {
            endpoint,
            servers,
            namespace: config.namespace.clone(),
            dead_suffix: config.dead_suffix.replace(':', "."),
            producer,
            state: LinkState::new(true),
            taken: Taken::default(),
            lease: config.lease,
            group: config.group.clone(),
        })
    }

    /// The topic of `queue`: `[A-Za-z0-9._-]`, as Kafka allows.
    fn topic(&self, queue: &str) -> Result<String, BrokerError> {
        let topic = format!("{}{queue}", self.namespace);
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        // The longest name Kafka takes, less the room for `.retry` and the
        // dead letters' suffix.
        let longest = 249 - ".retry".len().max(self.dead_suffix.len());
        if topic.is_empty() || topic.len() > longest || !topic.chars().all(allowed) {
            return Err(BrokerError::Name {
                queue: queue.to_owned(),
                reason: "a Kafka topic name holds letters, digits, `.`, `_` and `-`, up to 240",
            });
        }
        Ok(topic)
    }

    /// The consumer group of the queue whose topic is `topic`.
    fn group(&self, topic: &str) -> Result<String, BrokerError> {
        let group = self.group.replace("{queue}", topic);
        if group.is_empty() {
            return Err(BrokerError::Config {
                reason: "an empty Kafka consumer group name".into(),
            });
        }
        Ok(group)
    }

    fn retry_topic(topic: &str) -> String {
        format!("{topic}.retry")
    }

    fn dead_topic(&self, topic: &str) -> String {
        format!("{topic}{}", self.dead_suffix)
    }

    /// Notes a request's outcome on the link, and names the server in its
    /// error.
    fn noted<T>(&self, result: Result<T, KafkaError>) -> Result<T, BrokerError> {
        match result {
            Ok(value) => {
                self.state.set_up(true);
                Ok(value)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Notes a failed request on the link; its error.
    fn fail(&self, e: KafkaError) -> BrokerError {
        if unreachable(&e) {
            self.state.set_up(false);
        }
        self.state.failed();
        failed(&self.endpoint, e)
    }

    /// Produces `body` to `topic` with `headers`; resolves with the
    /// delivery report.
    async fn produce(
        &self,
        (topic, key): (&str, Option<&str>),
        body: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<(), BrokerError> {
        let mut record = FutureRecord::<str, [u8]>::to(topic).payload(body);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        let delivered = self.producer.send(record, SEND_TIMEOUT).await;
        self.noted(delivered.map(drop).map_err(|(e, _)| e))
    }

    /// A consumer (no subscription) of group `group`, for offsets and
    /// metadata, on a blocking thread.
    async fn with_group<T: Send + 'static>(
        &self,
        group: String,
        work: impl FnOnce(&BaseConsumer) -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<T, BrokerError> {
        let bootstrap = self.servers.bootstrap.clone();
        self.blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", &group)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .create()?;
            work(&consumer)
        })
        .await
    }

    /// Makes sure `topics` exist (a metadata request creates a missing
    /// topic where the servers create topics on first use).
    async fn declare(&self, topics: Vec<String>) -> Result<(), BrokerError> {
        let producer = self.producer.clone();
        self.blocking(move || {
            for topic in &topics {
                producer
                    .client()
                    .fetch_metadata(Some(topic), ADMIN_TIMEOUT)
                    .map(drop)?;
            }
            Ok(())
        })
        .await
    }

    /// Runs `work` (the client's calls that block) on a blocking thread,
    /// and notes its outcome on the link.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<T, BrokerError> {
        match actix_rt::task::spawn_blocking(work).await {
            Ok(result) => self.noted(result),
            Err(e) => Err(failed(&self.endpoint, std::io::Error::other(e))),
        }
    }
}

/// Per partition of `topic`: the group's position (its committed offset,
/// else the partition's start) and the partition's end.
fn positions(consumer: &BaseConsumer, topic: &str) -> Result<Vec<(i32, i64, i64)>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), ADMIN_TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    drop(metadata);
    let mut wanted = TopicPartitionList::new();
    for partition in &partitions {
        wanted.add_partition(topic, *partition);
    }
    let committed = consumer.committed_offsets(wanted, ADMIN_TIMEOUT)?;
    let mut out = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, ADMIN_TIMEOUT)?;
        let mark = committed
            .find_partition(topic, partition)
            .and_then(|entry| match entry.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            })
            .unwrap_or(low)
            .clamp(low, high);
        out.push((partition, mark, high));
    }
    // A list from a consumer goes before the consumer does.
    drop(committed);
    Ok(out)
}

/// Commits `offset` for each `(partition, offset)` of `topic`.
fn commit(consumer: &BaseConsumer, topic: &str, offsets: &[(i32, i64)]) -> Result<(), KafkaError> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut list = TopicPartitionList::new();
    for (partition, offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    consumer.commit(&list, CommitMode::Sync)
}

/// Per partition, the offset after its last message.
type Ends = Vec<(i32, i64)>;

/// Reads `topic` from the group's position to its end, and the positions
/// at that end: the messages as stored, in partition order.
fn read_unread(consumer: &BaseConsumer, topic: &str) -> Result<(Vec<Vec<u8>>, Ends), KafkaError> {
    let positions = positions(consumer, topic)?;
    let mut assigned = TopicPartitionList::new();
    for (partition, mark, high) in &positions {
        if mark < high {
            assigned.add_partition_offset(topic, *partition, Offset::Offset(*mark))?;
        }
    }
    let mut messages = Vec::new();
    if assigned.count() > 0 {
        consumer.assign(&assigned)?;
        let mut left: usize = positions.iter().map(|(_, m, h)| (h - m) as usize).sum();
        let started = std::time::Instant::now();
        let mut by_partition: std::collections::BTreeMap<i32, Vec<Vec<u8>>> = Default::default();
        while left > 0 && started.elapsed() < ADMIN_TIMEOUT {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    let (partition, offset) = (message.partition(), message.offset());
                    let within = positions
                        .iter()
                        .any(|(p, m, h)| *p == partition && (*m..*h).contains(&offset));
                    if within {
                        let body = message.payload().unwrap_or_default().to_vec();
                        by_partition.entry(partition).or_default().push(body);
                        left -= 1;
                    }
                }
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        consumer.unassign()?;
        if left > 0 {
            return Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        messages = by_partition.into_values().flatten().collect();
    }
    let ends = positions.iter().map(|(p, _, h)| (*p, *h)).collect();
    Ok((messages, ends))
}

impl RemoteQueues for KafkaQueues {
    fn link(&self) -> &LinkState {
        &self.state
    }

    fn send<'a>(
        &'a self,
        to: Destination<'a>,
        body: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let topic = self.topic(to.queue_only("Kafka")?)?;
            let headers = to.trace.map(|trace| {
                OwnedHeaders::new().insert(Header {
                    key: TRACEPARENT,
                    value: Some(trace),
                })
            });
            self.produce((&topic, to.key), &body, headers).await
        })
    }

    fn send_batch<'a>(
        &'a self,
        to: Destination<'a>,
        bodies: Vec<Vec<u8>>,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let topic = self.topic(to.queue_only("Kafka")?)?;
            // Queued in order (the idempotent producer keeps it), the
            // delivery reports awaited together.
            let sends = bodies
                .iter()
                .map(|body| self.produce((&topic, to.key), body, None));
            futures_util::future::try_join_all(sends).await.map(drop)
        })
    }

    fn length<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(async move {
            let topic = self.topic(queue)?;
            let taken = self.taken.clone();
            self.with_group(self.group(&topic)?, move |consumer| {
                let positions = positions(consumer, &topic)?;
                let taken = taken
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                Ok(positions
                    .iter()
                    .map(|(partition, mark, high)| {
                        let next = taken.get(&(topic.clone(), *partition)).copied();
                        (high - next.unwrap_or(0).max(*mark)).max(0) as usize
                    })
                    .sum())
            })
            .await
        })
    }

    fn dead_letters<'a>(
        &'a self,
        queue: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, BrokerError>> {
        Box::pin(async move {
            let dead = self.dead_topic(&self.topic(queue)?);
            let (stored, _) = self
                .with_group(dead.clone(), move |consumer| read_unread(consumer, &dead))
                .await?;
            Ok(stored
                .iter()
                .map(|letter| DeadLetter::decode(queue, letter))
                .collect())
        })
    }

    fn requeue_dead<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(async move {
            let topic = self.topic(queue)?;
            let dead = self.dead_topic(&topic);
            let reading = dead.clone();
            let (stored, ends) = self
                .with_group(dead.clone(), move |consumer| {
                    read_unread(consumer, &reading)
                })
                .await?;
            // Sent back first, then marked read: a failure in between
            // sends one again, never loses one.
            for letter in &stored {
                let message = DeadLetter::decode(queue, letter).message;
                self.produce((&topic, None), &DeadLetter::body_of(&message), None)
                    .await?;
            }
            self.with_group(dead.clone(), move |consumer| commit(consumer, &dead, &ends))
                .await?;
            Ok(stored.len())
        })
    }

    fn purge_dead<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(async move {
            let dead = self.dead_topic(&self.topic(queue)?);
            self.with_group(dead.clone(), move |consumer| skip_to_end(consumer, &dead))
                .await
        })
    }

    fn purge<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(async move {
            let topic = self.topic(queue)?;
            self.with_group(self.group(&topic)?, move |consumer| {
                skip_to_end(consumer, &topic)
            })
            .await
        })
    }

    fn open(
        self: Arc<Self>,
        consumer: ConsumerSpec,
    ) -> BoxFuture<'static, Result<Box<dyn Source>, BrokerError>> {
        Box::pin(async move {
            let source = consumer::KafkaSource::open(self, consumer).await?;
            Ok(Box::new(source) as Box<dyn Source>)
        })
    }
}

/// Moves the group's position on `topic` to its end; how many it skipped.
fn skip_to_end(consumer: &BaseConsumer, topic: &str) -> Result<usize, KafkaError> {
    let positions = positions(consumer, topic)?;
    let skipped = positions.iter().map(|(_, m, h)| (h - m) as usize).sum();
    let ends: Vec<(i32, i64)> = positions
        .iter()
        .filter(|(_, m, h)| m < h)
        .map(|(p, _, h)| (*p, *h))
        .collect();
    commit(consumer, topic, &ends)?;
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_urls_name_bootstrap_servers_and_the_group_protocol() {
        use GroupProtocol::{Classic, Consumer};
        for (url, bootstrap, protocol) in [
            ("kafka://h1:9092", "h1:9092", Classic),
            ("kafka://h1:9092,h2:9093/", "h1:9092,h2:9093", Classic),
            (
                "kafka://h1:9092/?group.protocol=consumer",
                "h1:9092",
                Consumer,
            ),
            ("kafka://h1:9092?group.protocol=classic", "h1:9092", Classic),
        ] {
            let servers = Servers::parse(url).expect(url);
            assert_eq!(
                (servers.bootstrap.as_str(), servers.protocol),
                (bootstrap, protocol),
                "{url}"
            );
        }
        for bad in [
            "kafka://",
            "kafka://h1:9092,",
            "kafka://user:secret@h1:9092",
            "kafka://h1:9092/topic",
            "kafka://h1:9092?group.protocol=eager",
            "kafka://h1:9092?linger.ms=5",
            "redis://h1:9092",
        ] {
            assert!(Servers::parse(bad).is_err(), "{bad}");
        }
        let error = BrokerConfig::kafka("kafka://user:secret@h1:9092").unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
