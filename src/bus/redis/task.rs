//! The Redis bus's task: connect, serve the subscribing connection,
//! reconnect.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{self, Either};
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::mpsc;

use super::super::transport::Interest;
use super::super::wire::{self, RESPONSE};
use super::{lock, Command, Link};
use crate::LOG_TARGET;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The first pause before a reconnection attempt.
const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// How often a live connection asks Redis for a PING, and how long the
/// answer may take: a server that stops answering (frozen, not closed) is
/// noticed within both, and the bus reconnects (readiness 503 meanwhile).
const PING_EVERY: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// The bus's task: connect, serve, reconnect, until the bus closes.
pub(super) async fn serve(link: Arc<Link>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut interest = Interest::default();
    let mut pause = FIRST_PAUSE;
    let url = link.hub.endpoint().redacted().to_owned();
    loop {
        let connect = actix_rt::time::timeout(CONNECT_TIMEOUT, connect(&link, &interest));
        let lost = match connect.await {
            Ok(Ok((sink, stream))) => {
                pause = FIRST_PAUSE;
                link.hub.set_up(true);
                log::info!(
                    target: LOG_TARGET,
                    "bus: connected to {url} ({} signal(s) subscribed)",
                    interest.len()
                );
                interest.confirm_waiting();
                match connected(&link, &mut interest, &mut commands, sink, stream).await {
                    Some(reason) => reason,
                    None => return set_down(&link),
                }
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no connection within {CONNECT_TIMEOUT:?}"),
        };
        if link.hub.is_up() {
            set_down(&link);
            log::warn!(target: LOG_TARGET, "bus: connection to {url} lost: {lost}; reconnecting");
        } else {
            log::warn!(target: LOG_TARGET, "bus: cannot connect to {url}: {lost}; retrying in {pause:?}");
        }
        // Keep track of (un)subscriptions during the pause.
        let mut sleep = pin!(actix_rt::time::sleep(pause));
        loop {
            match future::select(sleep.as_mut(), pin!(commands.recv())).await {
                Either::Left(_) => break,
                Either::Right((command, _)) => {
                    if !offline(&mut interest, command) {
                        return;
                    }
                }
            }
        }
        pause = (pause * 2).min(link.reconnect_max);
    }
}

fn set_down(link: &Link) {
    *lock(&link.publisher) = None;
    link.hub.set_up(false);
}

/// Notes a command while disconnected; `false` to end the task.
fn offline(interest: &mut Interest, command: Option<Command>) -> bool {
    match command {
        Some(Command::Subscribe { signal, confirmed }) => {
            interest.add(&signal);
            interest.wait(confirmed);
            true
        }
        Some(Command::Unsubscribe { signal }) => {
            interest.release(&signal);
            true
        }
        Some(Command::Close) | None => false,
    }
}

/// Connects both connections and subscribes every pattern.
async fn connect(
    link: &Link,
    interest: &Interest,
) -> Result<(PubSubSink, PubSubStream), redis::RedisError> {
    let prefix = link.hub.prefix();
    // One client for both: the same server (after a failover, the master
    // the Sentinels name now).
    let client = link.client.client().await?;
    let pubsub = client.get_async_pubsub().await?;
    let publisher = client.get_multiplexed_async_connection().await?;
    let (mut sink, stream) = pubsub.split();
    let mut patterns = vec![wire::pattern(prefix, RESPONSE)];
    patterns.extend(interest.signals().map(|s| wire::pattern(prefix, s)));
    sink.psubscribe(patterns).await?;
    *lock(&link.publisher) = Some(publisher);
    Ok((sink, stream))
}

/// Whether Redis answers a PING on the publishing connection in time. On
/// a cluster, the question is `ROLE`, and the answer must still be
/// `master`: a failover the cluster was asked for (`CLUSTER FAILOVER`)
/// keeps the old master's connections open as it becomes a replica, and
/// the bus must move to the new home, where the other buses go.
async fn answers_ping(link: &Link) -> bool {
    let Some(mut connection) = lock(&link.publisher).clone() else {
        return false;
    };
    if link.client.is_cluster() {
        let role = redis::cmd("ROLE");
        let answer = role.query_async::<Vec<redis::Value>>(&mut connection);
        return matches!(
            actix_rt::time::timeout(PING_TIMEOUT, answer).await,
            Ok(Ok(role)) if matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master")
        );
    }
    let ping = redis::cmd("PING");
    let answer = ping.query_async::<String>(&mut connection);
    matches!(
        actix_rt::time::timeout(PING_TIMEOUT, answer).await,
        Ok(Ok(_))
    )
}

/// Serves a live connection; returns why it was lost, or `None` when the
/// task should end.
async fn connected(
    link: &Arc<Link>,
    interest: &mut Interest,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    mut sink: PubSubSink,
    mut stream: PubSubStream,
) -> Option<String> {
    let prefix = link.hub.prefix();
    let mut ping = actix_rt::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.reset();
    loop {
        let command = pin!(commands.recv());
        let message_or_command = future::select(stream.next(), command);
        let next = match future::select(message_or_command, pin!(ping.tick())).await {
            Either::Left((Either::Left((message, _)), _)) => Either::Left(message),
            Either::Left((Either::Right((command, _)), _)) => Either::Right(command),
            Either::Right(_) => {
                if !answers_ping(link).await {
                    return Some(format!(
                        "no answer to a PING within {PING_TIMEOUT:?} (on a cluster: or the home node is no master)"
                    ));
                }
                continue;
            }
        };
        match next {
            Either::Left(Some(message)) => link.on_message(&message),
            Either::Left(None) => return Some("the connection closed".to_owned()),
            Either::Right(Some(Command::Subscribe { signal, confirmed })) => {
                if interest.add(&signal) {
                    if let Err(e) = sink.psubscribe(wire::pattern(prefix, &signal)).await {
                        interest.wait(confirmed);
                        return Some(e.to_string());
                    }
                }
                let _ = confirmed.send(());
            }
            Either::Right(Some(Command::Unsubscribe { signal })) => {
                if interest.release(&signal) {
                    if let Err(e) = sink.punsubscribe(wire::pattern(prefix, &signal)).await {
                        return Some(e.to_string());
                    }
                }
            }
            Either::Right(Some(Command::Close) | None) => return None,
        }
    }
}
