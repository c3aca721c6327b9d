//! A Kafka consumer: a member of the queue's consumer group, subscribed to
//! the queue's topic and its retry topic; takes what the client has
//! fetched (waiting only while nothing is), holds retries until they are
//! due, and commits each partition's offset up to its first message not
//! yet settled.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

use super::super::delivery::{persist, Verdict};
use super::super::error::{BrokerError, DeadLetter};
use super::super::remote::{ConsumerSpec, Slot, Source, Taken, Ticket};
use super::{failed, now_ms, KafkaQueues, ATTEMPTS, DUE, TRACEPARENT};
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
    consumer: StreamConsumer,
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
    partitions: HashMap<(String, i32), Partition>,
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
        let session = queues.lease.max(MIN_SESSION);
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &queues.bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // The lease: a killed consumer's partitions move on after it.
            .set("session.timeout.ms", session.as_millis().to_string())
            .set(
                "heartbeat.interval.ms",
                (session / 3).as_millis().to_string(),
            )
            .set("topic.metadata.refresh.interval.ms", "1000")
            // A retry due soon must not wait behind a long poll.
            .set("fetch.wait.max.ms", "50")
            .create()
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
        let mut offsets = lock(&shared.offsets);
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
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

    /// The retries due now, soonest first, up to `most`.
    fn due(&mut self, most: usize, ready: &mut Vec<OwnedMessage>) {
        let now = now_ms();
        while ready.len() < most {
            match self.waiting.peek() {
                Some(Reverse(w)) if w.due <= now => {
                    if let Some(Reverse(w)) = self.waiting.pop() {
                        ready.push(w.message);
                    }
                }
                _ => break,
            }
        }
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
            let lease = self.queues.lease.max(MIN_SESSION);
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
            while ready.is_empty() && started.elapsed() < longest {
                let until_due = self
                    .waiting
                    .peek()
                    .map(|Reverse(w)| Duration::from_millis((w.due - now_ms()).max(0) as u64));
                let wait = longest
                    .saturating_sub(started.elapsed())
                    .min(until_due.unwrap_or(Duration::MAX));
                let next = actix_rt::time::timeout(wait, self.shared.consumer.recv()).await;
                match next.map(|received| received.map(|message| message.detach())) {
                    Ok(Ok(message)) => self.received(message, &mut ready),
                    Ok(Err(e)) => {
                        self.shared.noted(&e);
                        actix_rt::time::sleep(wait.min(Duration::from_millis(100))).await;
                    }
                    Err(_) => {}
                }
                self.due(most, &mut ready);
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
                shared.consumer.unsubscribe();
                drop(shared);
            })
            .await;
        })
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
            let queues = KafkaQueues::new(Endpoint::new(&url), bootstrap, &config);
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
            let spec = ConsumerSpec {
                queue: "held",
                binding: Binding {
                    exchange: None,
                    topics: &[],
                },
                name: "held".into(),
                options: ConsumerOptions::default(),
                tally: Arc::default(),
                system: "kafka",
            };
            let mut source = KafkaSource::open(queues, spec).await.expect("a consumer");
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
