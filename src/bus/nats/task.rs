//! The NATS bus's tasks, on the System's arbiter: the connection's events
//! and heartbeat, the roster, the answers to this bus's calls, and one
//! reader per subscribed signal.

use std::pin::pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_nats::header::HeaderName;
use async_nats::{Client, Event, HeaderMap, Message};
use futures_util::future::{self, AbortHandle, Either};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::super::transport::{Hub, Route};
use super::roster::{self, Heard, Roster, HEARTBEAT};
use super::{lock, Link, Subscribed, REQUEST, RESPONDER, SENDER, TRACEPARENT};
use crate::nats_target::{token, NatsTarget};
use crate::LOG_TARGET;

/// How long a new connection waits for the other buses' announcements
/// before it reports itself up.
const SETTLE: Duration = Duration::from_millis(50);

/// How long a closing bus tries to say goodbye.
const GOODBYE: Duration = Duration::from_secs(1);

/// Starts the bus's tasks; the link is usable at once (the bus is handed
/// out once the hub is up).
pub(super) fn start(target: NatsTarget, hub: Arc<Hub>) -> Arc<Link> {
    let link = Arc::new(Link {
        inbox: format!("_INBOX.{}", hub.uid()),
        roster: Roster::new(hub.uid()),
        client: OnceLock::new(),
        prefix: token(hub.prefix()),
        signals: Mutex::default(),
        closing: Notify::new(),
        hub,
    });
    on_system_arbiter(serve(link.clone(), target));
    link
}

fn on_system_arbiter(task: impl std::future::Future<Output = ()> + Send + 'static) -> AbortHandle {
    let (task, handle) = future::abortable(task);
    actix_rt::System::current().arbiter().spawn(async move {
        let _ = task.await;
    });
    handle
}

/// The connection's life: connect, follow its events, announce this bus,
/// until the bus closes.
async fn serve(link: Arc<Link>, target: NatsTarget) {
    let hub = &link.hub;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let name = format!("microagent bus {}", hub.uid());
    let client = match target.connect(&name, hub.reconnect_max(), events_tx).await {
        Ok(client) => client,
        Err(e) => {
            let url = hub.endpoint().redacted();
            return log::error!(target: LOG_TARGET, "bus: cannot use {url}: {}", hub.failed(e));
        }
    };
    let _ = link.client.set(client.clone());
    let prefix = &link.prefix;
    let (answers, announcements) = match future::try_join(
        client.subscribe(format!("{}.*", link.inbox)),
        client.subscribe(roster::subject(prefix)),
    )
    .await
    {
        Ok(both) => both,
        Err(e) => return log::error!(target: LOG_TARGET, "bus: {}", hub.failed(e)),
    };
    link.roster.listen(announcements);
    let readers = [
        on_system_arbiter(read_answers(link.clone(), answers)),
        on_system_arbiter(read_roster(link.clone())),
    ];
    let mut heartbeat = actix_rt::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = pin!(events.recv());
        let closing = pin!(link.closing.notified());
        let tick = pin!(heartbeat.tick());
        match future::select(future::select(event, closing), tick).await {
            Either::Left((Either::Left((Some(event), _)), _)) => {
                on_event(&link, &client, event).await
            }
            Either::Left(_) => break,
            Either::Right(_) => {
                link.roster.expire(Instant::now());
                if hub.is_up() && link.roster.has_own() {
                    announce(&link, &client, false).await;
                }
            }
        }
    }
    goodbye(&link, &client, readers).await;
}

/// Follows the client's connection.
async fn on_event(link: &Link, client: &Client, event: Event) {
    let hub = &link.hub;
    let url = hub.endpoint().redacted();
    match event {
        Event::Connected => {
            // The client subscribed everything again before this event's
            // flush is answered; then hear who takes what.
            let _ = client.flush().await;
            announce(link, client, true).await;
            let _ = client.flush().await;
            actix_rt::time::sleep(SETTLE).await;
            if client.connection_state() == async_nats::connection::State::Connected {
                hub.set_up(true);
                let signals = lock(&link.signals).len();
                log::info!(target: LOG_TARGET, "bus: connected to {url} ({signals} signal(s) subscribed)");
            }
        }
        Event::Disconnected | Event::Closed => {
            if hub.is_up() {
                log::warn!(target: LOG_TARGET, "bus: connection to {url} lost; reconnecting");
            }
            hub.set_up(false);
        }
        Event::SlowConsumer(subscription) => hub.slow_consumer(
            url,
            format_args!("the client dropped messages of subscription {subscription}"),
        ),
        Event::LameDuckMode => {
            log::info!(target: LOG_TARGET, "bus: the server at {url} is going down (lame duck mode)");
        }
        Event::ServerError(e) => log::warn!(target: LOG_TARGET, "bus: {url}: {}", hub.failed(e)),
        Event::ClientError(e) => log::warn!(target: LOG_TARGET, "bus: {url}: {e}"),
        Event::Draining => {}
    }
}

/// Publishes this bus's announcement (`ask`: asking the others for theirs).
async fn announce(link: &Link, client: &Client, ask: bool) {
    let subject = roster::subject(&link.prefix);
    let said = link.roster.announcement(ask);
    if let Err(e) = client.publish(subject, said.into()).await {
        log::debug!(target: LOG_TARGET, "bus: an announcement was not sent: {e}");
    }
}

/// The bus is closing: say that it takes nothing any more, and stop.
async fn goodbye(link: &Link, client: &Client, readers: [AbortHandle; 2]) {
    let subscribed: Vec<Subscribed> = lock(&link.signals).drain().map(|(_, s)| s).collect();
    for signal in subscribed {
        signal.reader.abort();
    }
    link.roster.set_own(std::iter::empty());
    if link.hub.is_up() {
        let said = async {
            announce(link, client, false).await;
            let _ = client.flush().await;
        };
        let _ = actix_rt::time::timeout(GOODBYE, said).await;
    }
    for reader in readers {
        reader.abort();
    }
    link.hub.set_up(false);
}

/// Reads announcements.
async fn read_roster(link: Arc<Link>) {
    while let Some(message) = link.roster.next().await {
        match link.roster.heard(&message.payload) {
            Ok(Heard::Asked) if link.roster.has_own() => {
                if let Some(client) = link.client() {
                    announce(&link, client, false).await;
                }
            }
            Ok(_) => {}
            Err(e) => link.hub.bad(message.subject.as_str(), e),
        }
    }
}

/// Reads the answers to this bus's calls.
async fn read_answers(link: Arc<Link>, mut answers: async_nats::Subscriber) {
    while let Some(message) = answers.next().await {
        // A status from the server ("no responders": nobody had
        // subscribed the call's subject) is no bus's answer.
        if message.status.is_some() {
            continue;
        }
        let subject = message.subject.as_str();
        let id = subject.rsplit('.').next().unwrap_or_default();
        link.hub.answered(subject, id, &message.payload);
    }
}

/// One more local receiver of `signal`.
pub(super) fn subscribe(link: &Arc<Link>, signal: &str, confirmed: oneshot::Sender<()>) {
    let mut signals = lock(&link.signals);
    if let Some(subscribed) = signals.get_mut(signal) {
        subscribed.receivers += 1;
        let mut ready = subscribed.confirmed.subscribe();
        actix_rt::spawn(async move {
            if ready.wait_for(|ready| *ready).await.is_ok() {
                let _ = confirmed.send(());
            }
        });
        return;
    }
    let ready = Arc::new(watch::Sender::new(false));
    let reader = on_system_arbiter(read_signal(
        link.clone(),
        signal.to_owned(),
        ready.clone(),
        confirmed,
    ));
    let subscribed = Subscribed {
        receivers: 1,
        confirmed: ready,
        reader,
    };
    signals.insert(signal.to_owned(), subscribed);
}

/// One local receiver of `signal` fewer.
pub(super) fn unsubscribe(link: &Arc<Link>, signal: &str) {
    let mut signals = lock(&link.signals);
    let Some(subscribed) = signals.get_mut(signal) else {
        return;
    };
    subscribed.receivers -= 1;
    if subscribed.receivers > 0 {
        return;
    }
    if let Some(gone) = signals.remove(signal) {
        // Dropping the subscription unsubscribes it.
        gone.reader.abort();
    }
    link.roster.drop_signal(signal);
    drop(signals);
    if link.client().is_some() {
        let link = link.clone();
        actix_rt::spawn(async move {
            if let Some(client) = link.client() {
                announce(&link, client, false).await;
            }
        });
    }
}

/// The bus is gone: end its tasks.
pub(super) fn close(link: &Link) {
    link.closing.notify_one();
}

/// Subscribes `signal`, announces it, confirms once the server has both,
/// then hands what arrives to the hub.
async fn read_signal(
    link: Arc<Link>,
    signal: String,
    ready: Arc<watch::Sender<bool>>,
    confirmed: oneshot::Sender<()>,
) {
    // The bus is handed out once connected, so the client is there; a
    // closing bus drops `confirmed`, and the subscribe fails as down.
    let Some(client) = link.client().cloned() else {
        return;
    };
    let subject = format!("{}.{}.*", link.prefix, token(&signal));
    let mut messages = match client.subscribe(subject).await {
        Ok(messages) => messages,
        Err(e) => return log::warn!(target: LOG_TARGET, "bus: {}", link.hub.failed(e)),
    };
    // Counted from now on: the server takes the subscription before any
    // call published after it.
    link.roster.take_signal(&signal);
    announce(&link, &client, false).await;
    // While disconnected, the flush waits for (or fails before) the next
    // connection, which subscribes again.
    while client.flush().await.is_err() {
        link.hub.until_up().await;
    }
    ready.send_replace(true);
    let _ = confirmed.send(());
    while let Some(message) = messages.next().await {
        on_signal(&link, &client, &signal, message);
    }
}

/// Hands one signal (or call) to the hub, and sends back the answers.
fn on_signal(link: &Arc<Link>, client: &Client, signal: &str, message: Message) {
    let hub = &link.hub;
    let place = message.subject.as_str();
    let header = |name: HeaderName| {
        let headers = message.headers.as_ref()?;
        headers.get(name).map(|value| value.as_str())
    };
    let Some(sender) = header(SENDER) else {
        return hub.bad(place, format_args!("no {SENDER} header"));
    };
    let request_id = header(REQUEST);
    if request_id.is_some() && message.reply.is_none() {
        return hub.bad(place, "a call without a reply subject");
    }
    let route = Route {
        name: signal,
        sender,
        request_id,
        trace: header(TRACEPARENT),
    };
    let (Some(answering), Some(reply)) = (
        hub.deliver(place, route, &message.payload),
        message.reply.clone(),
    ) else {
        return;
    };
    let (client, uid) = (client.clone(), hub.uid().to_owned());
    actix_rt::spawn(async move {
        let Some(object) = answering.collect().await else {
            return;
        };
        let mut headers = HeaderMap::new();
        headers.insert(RESPONDER, uid.as_str());
        if let Err(e) = client
            .publish_with_headers(reply, headers, object.into())
            .await
        {
            log::warn!(target: LOG_TARGET, "bus: an RPC answer was not sent: {e}");
        }
    });
}
