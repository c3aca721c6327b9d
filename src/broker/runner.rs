//! Starting a consumer on the System's broker: the in-process one's loop
//! ([`memory`](super::memory)) or the loop shared by queues on a server
//! ([`remote`](super::remote)).

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{oneshot, watch};

use super::error::BrokerError;
use super::job::JobFn;
use super::memory::{self, MemConsumer, Memory};
use super::observe::Watchers;
use super::remote::{self, ConsumerSpec, RemoteQueues};

/// A broker's backend: in-process, or queues on a server.
#[derive(Clone)]
pub(super) enum Backend {
    Memory(Arc<Memory>),
    Remote(Arc<Remote>),
}

/// Queues on a server, with what [`BrokerInfo`](super::BrokerInfo) shows.
pub(super) struct Remote {
    pub(super) kind: &'static str,
    /// The URL, password redacted.
    pub(super) url: String,
    pub(super) queues: Arc<dyn RemoteQueues>,
    /// How many consumer loops run on it (until they retired).
    pub(super) loops: watch::Sender<usize>,
    /// Who watches what is sent and settled (the test kit).
    pub(super) watchers: Arc<Watchers>,
}

impl Remote {
    /// Every consumer loop retired (at most `patience`), then the backend
    /// closes what it holds open.
    pub(super) async fn close(&self, patience: std::time::Duration) {
        let mut loops = self.loops.subscribe();
        let _ = actix_rt::time::timeout(patience, loops.wait_for(|n| *n == 0)).await;
        self.queues.close().await;
    }
}

/// A running consumer; dropping it stops taking messages (those in flight
/// are still settled).
#[derive(Debug)]
pub(crate) struct Consuming {
    _stop: oneshot::Sender<()>,
    /// An in-process consumer's state, which its settlements read too.
    memory: Option<Arc<MemConsumer>>,
    /// How its first attempt to start went, until it is known (on a
    /// server): the server's refusal, or nothing (the sender dropped) once
    /// it consumes or goes on trying.
    starting: Option<oneshot::Receiver<BrokerError>>,
}

impl Consuming {
    /// Whether the broker refused the consumer at its first attempt, for
    /// good (a queue that exists with other settings): `Ready(Err)` then,
    /// `Ready(Ok)` once it consumes or goes on trying after a passing
    /// failure.
    pub(crate) fn poll_started(
        &mut self,
        task: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BrokerError>> {
        let Some(starting) = self.starting.as_mut() else {
            return std::task::Poll::Ready(Ok(()));
        };
        let outcome = std::task::ready!(std::pin::Pin::new(starting).poll(task));
        self.starting = None;
        std::task::Poll::Ready(match outcome {
            Ok(refused) => Err(refused),
            Err(_) => Ok(()),
        })
    }
}

impl Drop for Consuming {
    fn drop(&mut self) {
        // At once, not when the loop next runs: a settlement after this
        // point must not hand the agent another message.
        if let Some(consumer) = &self.memory {
            consumer.stop();
        }
    }
}

/// Starts the consumer's loop on the System's arbiter; a plain `fn`
/// consumer takes `batches` (several messages in one mailbox message).
pub(super) fn start(
    backend: Backend,
    spec: ConsumerSpec,
    batches: bool,
    deliver: JobFn,
) -> Consuming {
    let (stop, stopped) = oneshot::channel();
    let arbiter = actix_rt::System::current().arbiter().clone();
    match backend {
        Backend::Memory(queues) => {
            let items = queues.queue(spec.queue);
            items.mark_consumed();
            let consumer = MemConsumer::new(
                items,
                (spec.name, spec.queue, spec.tally),
                spec.options,
                batches,
                deliver,
            );
            arbiter.spawn(memory::run(consumer.clone(), stopped));
            Consuming {
                _stop: stop,
                memory: Some(consumer),
                starting: None,
            }
        }
        Backend::Remote(remote) => {
            let (refuse, refused) = oneshot::channel();
            let backend = (remote.queues.clone(), remote.watchers.clone());
            remote.loops.send_modify(|n| *n += 1);
            let loops = remote.loops.clone();
            arbiter.spawn(async move {
                remote::run(backend, spec, (deliver, batches), stopped, refuse).await;
                loops.send_modify(|n| *n -= 1);
            });
            Consuming {
                _stop: stop,
                memory: None,
                starting: Some(refused),
            }
        }
    }
}
