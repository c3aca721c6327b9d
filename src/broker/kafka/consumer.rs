//! A Kafka consumer: a member of the queue's consumer group, subscribed to
//! the queue's topic and its retry topic; takes what the client has
//! fetched (waiting only while nothing is), holds retries until they are
//! due, and commits each partition's offset up to its first message not
//! yet settled.
//!
//! When the group takes partitions from it (a rebalance), the consumer
//! stops taking, waits for the messages in flight of those partitions to
//! settle (up to the lease), commits them, and only then gives the
//! partitions up: their next owner starts after what was handled here.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use super::super::delivery::{persist, Verdict};
use super::super::error::{BrokerError, DeadLetter};
use super::super::remote::{ConsumerSpec, Slot, Source, Taken, Ticket};
use super::{failed, now_ms, GroupProtocol, KafkaQueues, Place, ATTEMPTS, DUE, TRACEPARENT};
use crate::LOG_TARGET;

/// The shortest session timeout a consumer asks for, whatever the lease.
///
/// A group's coordinator gives members rejoining after a rebalance up to
/// the session timeout less a second before it elects a leader (Apache
/// Kafka's members also have their rebalance timeout; librdkafka's mock
/// coordinator has only this). With a session of 1 s or less it waits the
/// whole session, and members waiting for the election time out before
/// it: under load, two consumers of one group were both dropped that way
/// and waited for a join answer that never came.
const MIN_SESSION: Duration = Duration::from_secs(2);

/// The session timeout a consumer asks for with the classic protocol.
fn session(lease: Duration) -> Duration {
    lease.max(MIN_SESSION)
}

/// The most retries a consumer holds until they are due. At this many,
/// the client stops fetching the retry topic (paused: what it had fetched
/// ahead is dropped and fetched again on resuming, from after the last
/// one held), and resumes once half of them went out.
const HELD_MOST: usize = 10_000;

/// One consumer of a queue.
pub(super) struct KafkaSource {
    shared: Arc<Shared>,
    /// Retries taken before they are due, soonest first.
    waiting: BinaryHeap<Reverse<Waiting>>,
    /// The most retries held in `waiting` ([`HELD_MOST`]).
    held_most: usize,
    /// Whether the retry topic's partitions are paused.
    paused: bool,
}

/// What a consumer and its tickets share.
struct Shared {
    queues: Arc<KafkaQueues>,
    consumer: StreamConsumer<Rebalancing>,
    /// The consumer's name (in its dead letters).
    name: Arc<str>,
    retry_topic: String,
    dead_topic: String,
    offsets: Mutex<Offsets>,
}

/// A retry held until it is due.
struct Waiting {
    due: i64,
    /// Taken order, among retries due at the same time.
    seq: u64,
    message: OwnedMessage,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}

impl Eq for Waiting {}

impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// Per partition, the offsets taken and not yet settled, the next offset
/// after the last taken, and the last committed.
#[derive(Default)]
struct Offsets {
    partitions: HashMap<Place, Partition>,
    seq: u64,
}

#[derive(Default)]
struct Partition {
    open: BTreeSet<i64>,
    next: i64,
    committed: i64,
}

impl Offsets {
    fn taken(&mut self, topic: &str, partition: i32, offset: i64) {
        let entry = self
            .partitions
            .entry((topic.to_owned(), partition))
            .or_default();
        entry.open.insert(offset);
        entry.next = entry.next.max(offset + 1);
    }

    /// `offset` settled: the offset to commit now, if it moved.
    fn settled(&mut self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        let entry = self.partitions.get_mut(&(topic.to_owned(), partition))?;
        entry.open.remove(&offset);
        let position = entry.open.first().copied().unwrap_or(entry.next);
        (position > entry.committed).then(|| {
            entry.committed = position;
            position
        })
    }
}

/// The consumer's side of its group's rebalances. Partitions assigned are
/// taken at once. Partitions revoked are noted, and given up by the
/// consumer once their messages in flight settled (see
/// [`KafkaSource::hand_back`]), unless the assignment is already lost or
/// the consumer is closing: then at once.
#[derive(Default)]
pub(super) struct Rebalancing {
    revoked: Mutex<VecDeque<Revoked>>,
    /// Set when the consumer closes: revocations are given up at once
    /// (closing waits for them).
    closing: AtomicBool,
    /// Told of each revocation to hold, so a consumer waiting for
    /// messages turns to it at once.
    revoked_now: tokio::sync::Notify,
}

/// Partitions the group took from the consumer.
struct Revoked {
    places: Vec<Place>,
    /// Given up one revocation at a time (cooperative and KIP-848
    /// protocols), or the whole assignment at once (eager).
    incremental: bool,
    since: Instant,
    /// Already given up (lost, or closing): only to forget.
    given_up: bool,
}

impl ClientContext for Rebalancing {}

impl ConsumerContext for Rebalancing {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        event: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let incremental = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let done = match event {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS if incremental => {
                consumer.incremental_assign(partitions)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => consumer.assign(partitions),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let places = partitions
                    .elements()
                    .iter()
                    .map(|p| (p.topic().to_owned(), p.partition()))
                    .collect();
                // Lost (the session ran out): the group has handed them
                // on already, and nothing can be committed.
                let at_once = self.closing.load(Ordering::Acquire) || consumer.assignment_lost();
                lock(&self.revoked).push_back(Revoked {
                    places,
                    incremental,
                    since: Instant::now(),
                    given_up: at_once,
                });
                if !at_once {
                    self.revoked_now.notify_one();
                    return;
                }
                give_up(consumer, partitions, incremental)
            }
            _ => {
                log::warn!(target: LOG_TARGET, "broker: a Kafka rebalance failed: {event:?}");
                give_up(consumer, partitions, incremental)
            }
        };
        if let Err(e) = done {
            log::warn!(target: LOG_TARGET, "broker: a Kafka rebalance ({event:?}): {e}");
        }
    }
}

/// Gives up `partitions` (the whole assignment, with the eager protocol).
fn give_up<C: Consumer<Rebalancing>>(
    consumer: &C,
    partitions: &TopicPartitionList,
    incremental: bool,
) -> KafkaResult<()> {
    if incremental {
        consumer.incremental_unassign(partitions)
    } else {
        consumer.unassign()
    }
}

/// A partition list of `places`.
fn listed<'a>(places: impl IntoIterator<Item = &'a Place>) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for (topic, partition) in places {
        list.add_partition(topic, *partition);
    }
    list
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The value of header `key`, as text.
fn header(message: &OwnedMessage, key: &str) -> Option<String> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

impl KafkaSource {
    /// Joins the queue's group, subscribed to the queue and its retries.
    pub(super) async fn open(
        queues: Arc<KafkaQueues>,
        spec: ConsumerSpec,
    ) -> Result<KafkaSource, BrokerError> {
        spec.without_exchange()?;
        let topic = queues.topic(spec.queue)?;
        let group = queues.group(&topic)?;
        let retry_topic = KafkaQueues::retry_topic(&topic);
        let dead_topic = queues.dead_topic(&topic);
        queues
            .declare(vec![topic.clone(), retry_topic.clone(), dead_topic.clone()])
            .await?;
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &queues.servers.bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("topic.metadata.refresh.interval.ms", "1000")
            // A retry due soon must not wait behind a long poll.
            .set("fetch.wait.max.ms", "50");
        match queues.servers.protocol {
            GroupProtocol::Classic => {
                // The lease: a killed consumer's partitions move on after it.
                let session = session(queues.lease);
                config
                    .set("session.timeout.ms", session.as_millis().to_string())
                    .set(
                        "heartbeat.interval.ms",
                        (session / 3).as_millis().to_string(),
                    );
            }
            // The servers set the session timeout.
            GroupProtocol::Consumer => {
                config.set("group.protocol", "consumer");
            }
        }
        let consumer: StreamConsumer<Rebalancing> = config
            .create_with_context(Rebalancing::default())
            .map_err(|e| failed(&queues.endpoint, e))?;
        consumer
            .subscribe(&[&topic, &retry_topic])
            .map_err(|e| failed(&queues.endpoint, e))?;
        Ok(KafkaSource {
            shared: Arc::new(Shared {
                queues,
                consumer,
                name: spec.name,
                retry_topic,
                dead_topic,
                offsets: Mutex::default(),
            }),
            waiting: BinaryHeap::new(),
            held_most: HELD_MOST,
            paused: false,
        })
    }

    /// Pauses fetching the retry topic once `held_most` retries wait, and
    /// resumes it once half of them went out.
    fn bound_held(&mut self) {
        let held = self.waiting.len();
        let pause = match self.paused {
            false if held >= self.held_most => true,
            // Paused, and yet more came: a new assignment fetches again.
            true if held > self.held_most => true,
            true if held <= self.held_most / 2 => false,
            _ => return,
        };
        let consumer = &self.shared.consumer;
        let changed = consumer.assignment().and_then(|assigned| {
            let mut retries = TopicPartitionList::new();
            for element in assigned.elements() {
                if element.topic() == self.shared.retry_topic {
                    retries.add_partition(element.topic(), element.partition());
                }
            }
            // Nothing obtained from the consumer outlives this call.
            drop(assigned);
            if pause {
                consumer.pause(&retries)
            } else {
                consumer.resume(&retries)
            }
        });
        match changed {
            Ok(()) => self.paused = pause,
            Err(e) => self.shared.noted(&e),
        }
    }

    /// Notes a message received: handed on now, or held until due (up to
    /// the bound).
    fn received(&mut self, message: OwnedMessage, ready: &mut Vec<OwnedMessage>) {
        let shared = &self.shared;
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        if shared.revoking(topic, partition) {
            // Fetched before the group took its partition: the next owner
            // reads it from the last commit.
            return;
        }
        let mut offsets = lock(&shared.offsets);
        offsets.taken(topic, partition, offset);
        let mut taken = lock(&shared.queues.taken);
        let next = taken.entry((topic.to_owned(), partition)).or_default();
        *next = (*next).max(offset + 1);
        drop(taken);
        let due = (message.topic() == shared.retry_topic)
            .then(|| header(&message, DUE).and_then(|d| d.parse::<i64>().ok()))
            .flatten()
            .unwrap_or(0);
        if due > now_ms() {
            offsets.seq += 1;
            let seq = offsets.seq;
            drop(offsets);
            self.waiting.push(Reverse(Waiting { due, seq, message }));
            self.bound_held();
        } else {
            ready.push(message);
        }
    }

    /// Completes the revocations the group asked for, in order. A
    /// partition is given up once its messages in flight settled (held
    /// retries stay unsettled: the next owner reads them again), or once
    /// the lease ran out (what is still in flight is delivered again);
    /// what settled is committed first, so the next owner starts after
    /// it.
    async fn hand_back(&mut self) {
        loop {
            let (places, incremental, since, given_up) = {
                let revoked = lock(&self.shared.consumer.context().revoked);
                match revoked.front() {
                    None => return,
                    Some(r) => (r.places.clone(), r.incremental, r.since, r.given_up),
                }
            };
            if !given_up {
                let in_flight = self.in_flight(&places);
                if in_flight > 0 && since.elapsed() < self.shared.queues.lease {
                    return;
                }
                self.commit_settled(&places).await;
                let shared = &self.shared;
                if let Err(e) = give_up(&shared.consumer, &listed(&places), incremental) {
                    shared.noted(&e);
                }
                log::info!(
                    target: LOG_TARGET,
                    "broker: `{}` gave {} Kafka partition(s) back to its group after {:?}{}",
                    shared.name,
                    places.len(),
                    since.elapsed(),
                    match in_flight {
                        0 => String::new(),
                        n => format!(" ({n} message(s) still in flight will be delivered again)"),
                    }
                );
            }
            self.forget(&places);
            lock(&self.shared.consumer.context().revoked).pop_front();
        }
    }

    /// How many messages of `places` are taken and not settled, less the
    /// retries held until due.
    fn in_flight(&self, places: &[Place]) -> usize {
        let held: BTreeSet<(&str, i32, i64)> = self
            .waiting
            .iter()
            .map(|Reverse(w)| (w.message.topic(), w.message.partition(), w.message.offset()))
            .collect();
        let offsets = lock(&self.shared.offsets);
        places
            .iter()
            .filter_map(|place| Some((place, offsets.partitions.get(place)?)))
            .map(|((topic, partition), entry)| {
                entry
                    .open
                    .iter()
                    .filter(|offset| !held.contains(&(topic.as_str(), *partition, **offset)))
                    .count()
            })
            .sum()
    }

    /// Commits, and waits for the servers' answer, the positions of
    /// `places` this consumer moved.
    async fn commit_settled(&self, places: &[Place]) {
        let positions: Vec<(Place, i64)> = {
            let offsets = lock(&self.shared.offsets);
            places
                .iter()
                .filter_map(|place| {
                    let entry = offsets.partitions.get(place)?;
                    (entry.committed > 0).then(|| (place.clone(), entry.committed))
                })
                .collect()
        };
        if positions.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let committed = self
            .shared
            .queues
            .blocking(move || {
                let mut list = TopicPartitionList::new();
                for ((topic, partition), position) in &positions {
                    list.add_partition_offset(topic, *partition, Offset::Offset(*position))?;
                }
                shared.consumer.commit(&list, CommitMode::Sync)
            })
            .await;
        if let Err(e) = committed {
            log::warn!(
                target: LOG_TARGET,
                "broker: `{}` committing before it gives partitions back: {e}; their messages may be delivered again",
                self.shared.name
            );
        }
    }

    /// Drops what the consumer knew of `places`: their offsets, and the
    /// retries it held from them (their next owner reads them again).
    fn forget(&mut self, places: &[Place]) {
        let mut offsets = lock(&self.shared.offsets);
        let mut taken = lock(&self.shared.queues.taken);
        for place in places {
            offsets.partitions.remove(place);
            taken.remove(place);
        }
        drop((offsets, taken));
        self.waiting.retain(|Reverse(w)| {
            let place = (w.message.topic().to_owned(), w.message.partition());
            !places.contains(&place)
        });
    }

    /// The retries due now, soonest first, up to `most`.
    fn due(&mut self, most: usize, ready: &mut Vec<OwnedMessage>) {
        let now = now_ms();
        // Due, but of a partition being given back: held until forgotten.
        let mut revoking = Vec::new();
        while ready.len() < most {
            match self.waiting.peek() {
                Some(Reverse(w)) if w.due <= now => {
                    if let Some(Reverse(w)) = self.waiting.pop() {
                        let (topic, partition) = (w.message.topic(), w.message.partition());
                        if self.shared.revoking(topic, partition) {
                            revoking.push(Reverse(w));
                        } else {
                            ready.push(w.message);
                        }
                    }
                }
                _ => break,
            }
        }
        self.waiting.extend(revoking);
    }

    /// A received message as the consumer loop takes it.
    fn taken(&self, message: OwnedMessage) -> Taken {
        let attempts = header(&message, ATTEMPTS)
            .and_then(|a| a.parse::<u32>().ok())
            .unwrap_or(0);
        let trace = header(&message, TRACEPARENT).map(String::into_boxed_str);
        let body: Arc<[u8]> = message.payload().unwrap_or_default().into();
        // The ticket keeps the message for its place, key and headers; its
        // body is `body` from now on, held once.
        let message = message.set_payload(None);
        Taken {
            trace,
            body: body.clone(),
            attempts,
            ticket: Box::new(KafkaTicket {
                shared: self.shared.clone(),
                message,
                body,
                attempts,
            }),
        }
    }
}

/// Whether a consumer's error is one to wait through quietly (a topic not
/// created yet, the end of a partition).
fn passing(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::PartitionEOF)
    )
}

impl Shared {
    /// Whether the group is taking `topic`'s `partition` from this
    /// consumer and it has not given it up yet.
    fn revoking(&self, topic: &str, partition: i32) -> bool {
        let revoked = lock(&self.consumer.context().revoked);
        revoked
            .iter()
            .any(|r| !r.given_up && r.places.iter().any(|(t, p)| t == topic && *p == partition))
    }

    /// The next message the client has, waiting up to `wait`; none when
    /// the wait ran out, or when the group revoked partitions meanwhile
    /// (the consumer completes that first).
    async fn next(&self, wait: Duration) -> Option<Result<OwnedMessage, KafkaError>> {
        let received = self.consumer.recv();
        let revoked = self.consumer.context().revoked_now.notified();
        futures_util::pin_mut!(received, revoked);
        let next = actix_rt::time::timeout(wait, futures_util::future::select(received, revoked));
        match next.await {
            Ok(futures_util::future::Either::Left((received, _))) => {
                Some(received.map(|message| message.detach()))
            }
            Ok(futures_util::future::Either::Right(_)) | Err(_) => None,
        }
    }

    /// Whether a revocation waits to be completed.
    fn holding(&self) -> bool {
        !lock(&self.consumer.context().revoked).is_empty()
    }

    /// Gives up at once what the group revoked and the consumer still
    /// holds (it is closing: closing waits for that).
    fn close(&self) {
        let rebalancing = self.consumer.context();
        rebalancing.closing.store(true, Ordering::Release);
        for revoked in lock(&rebalancing.revoked).drain(..) {
            if revoked.given_up {
                continue;
            }
            let places = listed(&revoked.places);
            if let Err(e) = give_up(&self.consumer, &places, revoked.incremental) {
                self.noted(&e);
            }
        }
    }

    /// Notes an error the consumer reported. The client recovers by itself
    /// (reconnects, rejoins the group), and only while it is polled: the
    /// consumer goes on polling rather than pausing, or a rebalance would
    /// wait on it.
    fn noted(&self, e: &KafkaError) {
        if passing(e) {
            return;
        }
        self.queues.state.failed();
        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::InvalidSessionTimeout) {
            // The consumer cannot join its group until the lease changes.
            let lease = session(self.queues.lease);
            log::error!(
                target: LOG_TARGET,
                "broker: the Kafka servers refuse the lease ({lease:?}) as the session timeout of `{}`'s consumers: {e} (Apache Kafka takes 6 s to 30 min by default: its group.min.session.timeout.ms and group.max.session.timeout.ms)",
                self.name
            );
            return;
        }
        log::warn!(target: LOG_TARGET, "broker: consuming from Kafka: {e}");
    }
}

impl Source for KafkaSource {
    fn take(
        &mut self,
        most: usize,
        longest: Duration,
    ) -> BoxFuture<'_, Result<Vec<Taken>, BrokerError>> {
        Box::pin(async move {
            self.hand_back().await;
            let most = most.max(1);
            let mut ready = Vec::new();
            self.due(most, &mut ready);
            // Fetching the retries again once half of those held went out.
            self.bound_held();
            // What the client has fetched already.
            while ready.len() < most {
                let next = self.shared.consumer.recv().now_or_never();
                match next.map(|received| received.map(|message| message.detach())) {
                    Some(Ok(message)) => self.received(message, &mut ready),
                    Some(Err(e)) => {
                        self.shared.noted(&e);
                        break;
                    }
                    None => break,
                }
            }
            // Nothing: wait for one, until the next retry is due at most.
            let started = std::time::Instant::now();
            while ready.is_empty() && started.elapsed() < longest && !self.shared.holding() {
                let until_due = self
                    .waiting
                    .peek()
                    .map(|Reverse(w)| Duration::from_millis((w.due - now_ms()).max(0) as u64));
                let wait = longest
                    .saturating_sub(started.elapsed())
                    .min(until_due.unwrap_or(Duration::MAX));
                match self.shared.next(wait).await {
                    Some(Ok(message)) => self.received(message, &mut ready),
                    Some(Err(e)) => {
                        self.shared.noted(&e);
                        actix_rt::time::sleep(wait.min(Duration::from_millis(100))).await;
                    }
                    None => {}
                }
                self.due(most, &mut ready);
            }
            if ready.is_empty() && self.shared.holding() {
                // The partitions being given back give nothing, and the
                // consumer comes back soon to see whether their messages
                // in flight settled.
                actix_rt::time::sleep(longest.min(Duration::from_millis(10))).await;
            }
            if !ready.is_empty() {
                self.shared.queues.state.set_up(true);
            }
            Ok(ready.into_iter().map(|m| self.taken(m)).collect())
        })
    }

    fn recover(&mut self) -> BoxFuture<'_, Result<(), BrokerError>> {
        // The client reconnects by itself.
        Box::pin(async { Ok(()) })
    }

    fn retire(self: Box<Self>) -> BoxFuture<'static, ()> {
        // Every message handed out is settled (and committed); retries
        // held and not due are not, and go to the group's next member.
        let KafkaSource {
            shared, waiting, ..
        } = *self;
        drop(waiting);
        Box::pin(async move {
            // Leaving the group waits for the servers: not on the arbiter.
            let _ = actix_rt::task::spawn_blocking(move || {
                shared.close();
                shared.consumer.unsubscribe();
                drop(shared);
            })
            .await;
        })
    }
}

impl Drop for Shared {
    /// Dropping the consumer closes it, which waits for a revocation the
    /// consumer was holding: given up first.
    fn drop(&mut self) {
        self.close();
    }
}

/// Settles one message: commits its offset once everything before it in
/// its partition is settled, after a retry or a dead letter is delivered.
struct KafkaTicket {
    shared: Arc<Shared>,
    message: OwnedMessage,
    body: Arc<[u8]>,
    attempts: u32,
}

impl Ticket for KafkaTicket {
    fn settle(self: Box<Self>, verdict: Verdict, slot: Slot) {
        actix_rt::spawn(async move {
            let KafkaTicket {
                shared,
                message,
                body,
                attempts,
            } = *self;
            // A retry keeps its key (and so its partition of the retry topic).
            let key = message
                .key()
                .map(|key| String::from_utf8_lossy(key).into_owned());
            let handed_on = |topic: &str, attempts: u32, due: i64| {
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: ATTEMPTS,
                        value: Some(&attempts.to_string()),
                    })
                    .insert(Header {
                        key: DUE,
                        value: Some(&due.to_string()),
                    });
                let headers = match header(&message, TRACEPARENT) {
                    Some(trace) => headers.insert(Header {
                        key: TRACEPARENT,
                        value: Some(&trace),
                    }),
                    None => headers,
                };
                (topic.to_owned(), headers)
            };
            let (to, payload, headers) = match verdict {
                Verdict::Ack => (None, Vec::new(), None),
                Verdict::Release => {
                    let (topic, headers) = handed_on(&shared.retry_topic, attempts, now_ms());
                    (Some(topic), body.to_vec(), Some(headers))
                }
                Verdict::Retry {
                    attempts, pause, ..
                } => {
                    let due = now_ms() + pause.as_millis() as i64;
                    let (topic, headers) = handed_on(&shared.retry_topic, attempts, due);
                    (Some(topic), body.to_vec(), Some(headers))
                }
                Verdict::Dead { reason, attempts } => {
                    let letter = DeadLetter::encode(&body, &reason, attempts, &shared.name);
                    (Some(shared.dead_topic.clone()), letter.into_bytes(), None)
                }
            };
            if let Some(topic) = to {
                persist("handing a message on", || {
                    shared
                        .queues
                        .produce((&topic, key.as_deref()), &payload, headers.clone())
                })
                .await;
            }
            shared.commit(&message);
            drop(slot);
        });
    }
}

impl Shared {
    /// Notes `message` settled, and commits its partition's new position.
    fn commit(&self, message: &OwnedMessage) {
        let (topic, partition) = (message.topic(), message.partition());
        let Some(position) = lock(&self.offsets).settled(topic, partition, message.offset()) else {
            return;
        };
        let mut list = TopicPartitionList::new();
        let added = list.add_partition_offset(topic, partition, Offset::Offset(position));
        let committed = added.and_then(|()| self.consumer.commit(&list, CommitMode::Async));
        if let Err(e) = committed {
            // Not committed (a rebalance took the partition, say): the
            // message is delivered again, never lost.
            self.queues.state.failed();
            log::warn!(
                target: LOG_TARGET,
                "broker: committing `{topic}` partition {partition} at {position} failed: {e}; its messages may be delivered again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Endpoint;
    use crate::broker::config::BrokerConfig;
    use crate::broker::job::{Binding, ConsumerOptions};
    use crate::broker::remote::Slot;

    /// A consumer holds at most its bound of retries not yet due: at the
    /// bound the retry topic is paused, and resumed once they went out.
    /// Every retry comes once; none is skipped by the pause.
    #[test]
    fn retries_held_until_due_are_bounded_and_none_is_skipped() {
        let cluster = rdkafka::mocking::MockCluster::new(3).expect("a mock cluster");
        let bootstrap = cluster.bootstrap_servers();
        actix_rt::System::new().block_on(async move {
            let url = format!("kafka://{bootstrap}");
            // A session past the mock's first join delay (3 s), which
            // members waiting to join must outlast.
            let config = BrokerConfig::kafka(&url)
                .expect("a Kafka URL")
                .lease(Duration::from_secs(6));
            let servers = super::super::Servers::parse(&url).expect("a Kafka URL");
            let queues = KafkaQueues::new(Endpoint::new(&url), servers, &config);
            let queues = Arc::new(queues.expect("a producer"));
            let retry_topic = KafkaQueues::retry_topic(&queues.topic("held").expect("a name"));
            // Due after the consumer joined (3 s at most).
            let due = now_ms() + 8_000;
            for id in 0..40 {
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: ATTEMPTS,
                        value: Some("1"),
                    })
                    .insert(Header {
                        key: DUE,
                        value: Some(&due.to_string()),
                    });
                let body = format!("{{\"id\":{id}}}");
                queues
                    .produce((&retry_topic, None), body.as_bytes(), Some(headers))
                    .await
                    .expect("sent");
            }
            let mut source = KafkaSource::open(queues, spec("held"))
                .await
                .expect("a consumer");
            source.held_most = 10;
            let (mut most_held, mut bodies) = (0, BTreeSet::new());
            let start = std::time::Instant::now();
            while bodies.len() < 40 {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "{} of 40 came",
                    bodies.len()
                );
                let taken = source
                    .take(16, Duration::from_millis(50))
                    .await
                    .expect("taken");
                most_held = most_held.max(source.waiting.len());
                for message in taken {
                    assert!(bodies.insert(message.body.to_vec()), "came twice");
                }
            }
            assert_eq!(most_held, 10, "held up to the bound, no more");
            assert!(!source.paused, "resumed");
            Box::new(source).retire().await;
        });
    }

    /// A consumer's spec for queue `queue`.
    fn spec(queue: &'static str) -> ConsumerSpec {
        ConsumerSpec {
            queue,
            binding: Binding {
                exchange: None,
                topics: &[],
            },
            name: queue.into(),
            options: ConsumerOptions::default(),
            tally: Arc::default(),
            system: "kafka",
        }
    }

    /// One round of two consumers: the first takes nothing (what it had
    /// is in flight, or given back); what the second takes is noted, with
    /// when.
    async fn round(
        first: &mut KafkaSource,
        second: &mut KafkaSource,
        got: &mut Vec<(Taken, Instant)>,
    ) {
        let taken = first.take(16, Duration::from_millis(20)).await;
        assert!(taken.expect("taken").is_empty(), "the first takes no more");
        let taken = second.take(16, Duration::from_millis(20)).await;
        got.extend(
            taken
                .expect("taken")
                .into_iter()
                .map(|t| (t, Instant::now())),
        );
    }

    /// When the group takes partitions from a consumer, the consumer gives
    /// them up once its messages in flight there settled, committed, or
    /// once the lease ran out: their next owner gets again only what was
    /// still in flight then, and not before.
    #[test]
    fn a_revoked_partition_is_given_up_once_its_messages_in_flight_settled() {
        // A mock cluster whose consumer groups (KIP-848) heartbeat often.
        let holder: rdkafka::producer::BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", "3")
            .create()
            .expect("a mock cluster");
        // SAFETY: the mock cluster belongs to `holder`, alive until the
        // end of the test; the calls set its own state.
        let bootstrap = unsafe {
            use rdkafka::bindings as rd;
            use rdkafka::producer::Producer;
            let mock = rd::rd_kafka_handle_mock_cluster(holder.client().native_ptr());
            assert!(!mock.is_null(), "the client made a mock cluster");
            rd::rd_kafka_mock_set_group_consumer_heartbeat_interval_ms(mock, 100);
            std::ffi::CStr::from_ptr(rd::rd_kafka_mock_cluster_bootstraps(mock))
                .to_string_lossy()
                .into_owned()
        };
        actix_rt::System::new().block_on(async move {
            let url = format!("kafka://{bootstrap}?group.protocol=consumer");
            let lease = Duration::from_secs(3);
            let config = BrokerConfig::kafka(&url).expect("a Kafka URL").lease(lease);
            let servers = super::super::Servers::parse(&url).expect("a Kafka URL");
            let queues = KafkaQueues::new(Endpoint::new(&url), servers, &config);
            let queues = Arc::new(queues.expect("a producer"));
            let topic = queues.topic("revoked").expect("a name");
            queues.declare(vec![topic.clone()]).await.expect("a topic");
            // Three messages in each of the topic's four partitions.
            let mut sent = BTreeSet::new();
            for partition in 0..4 {
                for i in 0..3 {
                    let body = format!("{{\"p\":{partition},\"i\":{i}}}");
                    let record = rdkafka::producer::FutureRecord::<str, str>::to(&topic)
                        .payload(&body)
                        .partition(partition);
                    let sending = queues.producer.send(record, Duration::from_secs(10));
                    sending.await.expect("sent");
                    sent.insert(body);
                }
            }
            let partition_of = |body: &[u8]| {
                let value: serde_json::Value = serde_json::from_slice(body).expect("JSON");
                (
                    value["p"].as_i64().expect("p") as i32,
                    value["i"].as_i64().expect("i"),
                )
            };
            // The first consumer takes all twelve, and settles none yet.
            let mut first = KafkaSource::open(queues.clone(), spec("revoked"))
                .await
                .expect("a consumer");
            let mut in_flight = Vec::new();
            let start = Instant::now();
            while in_flight.len() < 12 {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "{} of 12 came",
                    in_flight.len()
                );
                in_flight.extend(
                    first
                        .take(16, Duration::from_millis(50))
                        .await
                        .expect("taken"),
                );
            }
            let bodies: BTreeSet<String> = in_flight
                .iter()
                .map(|t| String::from_utf8_lossy(&t.body).into_owned())
                .collect();
            assert_eq!(bodies, sent, "each of the twelve, once");
            // A second one joins: the group takes some partitions from the
            // first.
            let mut second = KafkaSource::open(queues.clone(), spec("revoked"))
                .await
                .expect("a consumer");
            let mut second_got: Vec<(Taken, Instant)> = Vec::new();
            let revoked: Vec<i32> = loop {
                assert!(start.elapsed() < Duration::from_secs(60), "no revocation");
                let noted = lock(&first.shared.consumer.context().revoked)
                    .front()
                    .map(|r| r.places.clone());
                if let Some(places) = noted {
                    break places
                        .iter()
                        .filter(|(t, _)| *t == topic)
                        .map(|(_, p)| *p)
                        .collect();
                }
                round(&mut first, &mut second, &mut second_got).await;
            };
            let revoked_at = Instant::now();
            assert!(
                !revoked.is_empty(),
                "the queue's topic keeps a partition to revoke"
            );
            // Every message settles but one of a revoked partition (its
            // last), held past the lease.
            let kept = (revoked[0], 2);
            let mut held = None;
            for taken in in_flight {
                if partition_of(&taken.body) == kept {
                    held = Some(taken);
                } else {
                    taken.ticket.settle(Verdict::Ack, Slot::alone());
                }
            }
            let held = held.expect("the held message was taken");
            // The second gets the revoked partitions once the first gave
            // them up: of them, only the message still in flight.
            let start = Instant::now();
            while start.elapsed() < lease + Duration::from_secs(5) {
                round(&mut first, &mut second, &mut second_got).await;
            }
            let got: Vec<(i32, i64)> = second_got
                .iter()
                .map(|(t, _)| partition_of(&t.body))
                .collect();
            assert_eq!(
                got,
                vec![kept],
                "handled again: only what was in flight past the lease"
            );
            let (again, at) = second_got.pop().expect("one");
            assert!(
                at.duration_since(revoked_at) >= lease - Duration::from_millis(100),
                "handed on after the lease, not before: {:?}",
                at.duration_since(revoked_at)
            );
            assert!(
                lock(&first.shared.consumer.context().revoked).is_empty(),
                "given up"
            );
            // Settled late by the first: it commits nothing of a partition
            // it gave up.
            held.ticket.settle(Verdict::Ack, Slot::alone());
            again.ticket.settle(Verdict::Ack, Slot::alone());
            actix_rt::time::sleep(Duration::from_millis(200)).await;
            assert!(!lock(&first.shared.offsets)
                .partitions
                .contains_key(&(topic.clone(), kept.0)));
            Box::new(first).retire().await;
            Box::new(second).retire().await;
        });
        drop(holder);
    }

    #[test]
    fn a_partition_commits_up_to_its_first_message_not_settled() {
        let mut offsets = Offsets::default();
        for offset in 0..4 {
            offsets.taken("jobs", 0, offset);
        }
        offsets.taken("jobs", 1, 7);
        assert_eq!(offsets.settled("jobs", 0, 1), None, "0 is still open");
        assert_eq!(offsets.settled("jobs", 0, 0), Some(2));
        assert_eq!(offsets.settled("jobs", 0, 3), None, "2 is still open");
        assert_eq!(offsets.settled("jobs", 0, 2), Some(4));
        assert_eq!(offsets.settled("jobs", 1, 7), Some(8));
        // Settled twice: nothing moves.
        assert_eq!(offsets.settled("jobs", 1, 7), None);
        assert_eq!(offsets.settled("other", 0, 0), None);
    }
}
