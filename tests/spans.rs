//! The spans of a request that calls a receiver which sends to a queue
//! whose consumer fails twice, recorded by a real `tracing-subscriber`
//! registry: one trace, parent and child as the message went, named and
//! attributed after the OpenTelemetry messaging conventions; what a run
//! traces carries the run's span.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use microagent::broker::{Broker, Queue};
use microagent::bus::{Bus, Signal};
use microagent::prelude::*;
use serde::{Deserialize, Serialize};
use support::process::HANG;
use support::Boom;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Instrument;
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// A span as recorded.
#[derive(Debug, Clone)]
struct Recorded {
    id: u64,
    parent: Option<u64>,
    /// `otel.name` when it has one, else the span's own name.
    name: String,
    fields: BTreeMap<String, String>,
    /// Messages of the events traced inside it.
    events: Vec<String>,
    closed: bool,
}

/// Every span and event of the process.
#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Vec<Recorded>>>);

impl Recorder {
    fn spans(&self) -> MutexGuard<'_, Vec<Recorded>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let parent = ctx
            .span(id)
            .and_then(|span| span.parent().map(|p| p.id().into_u64()));
        let name = fields
            .get("otel.name")
            .cloned()
            .unwrap_or_else(|| attrs.metadata().name().to_owned());
        self.spans().push(Recorded {
            id: id.into_u64(),
            parent,
            name,
            fields,
            events: Vec::new(),
            closed: false,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: LayerContext<'_, S>) {
        if let Some(span) = self
            .spans()
            .iter_mut()
            .rev()
            .find(|s| s.id == id.into_u64())
        {
            values.record(&mut Fields(&mut span.fields));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let id = span.id().into_u64();
        if let Some(span) = self.spans().iter_mut().rev().find(|s| s.id == id) {
            span.events
                .push(fields.remove("message").unwrap_or_default());
        }
    }

    fn on_close(&self, id: Id, _: LayerContext<'_, S>) {
        if let Some(span) = self
            .spans()
            .iter_mut()
            .rev()
            .find(|s| s.id == id.into_u64())
        {
            span.closed = true;
        }
    }
}

#[derive(Signal, Serialize, Deserialize, Clone)]
struct GetStock {
    item: String,
}

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "span-mail")]
struct Mail {
    item: String,
}

/// Answers a stock call after sending a mail.
#[derive(Default, MicroAgent)]
struct Stock;

#[microagent::hooks]
impl Stock {
    #[receiver(GetStock)]
    async fn get_stock(&mut self, ask: GetStock) -> u32 {
        let mail = Mail { item: ask.item };
        Broker::current().send(mail).await.expect("sent");
        3
    }
}

/// Fails every mail; ticks once.
#[derive(Default, MicroAgent)]
struct Mailer;

#[microagent::hooks]
impl Mailer {
    #[consumer(Mail, attempts = 2, backoff = 0.01)]
    fn mail(&mut self, mail: Mail) -> Result<(), Boom> {
        tracing::info!("mailing {}", mail.item);
        Err(Boom("no mail server"))
    }

    #[periodic(period = 3600.0)]
    fn tick(&mut self) {}

    #[on(pre_start)]
    fn open(&mut self) {}
}

#[test]
fn a_message_is_one_trace_from_the_request_to_its_last_attempt() {
    let recorder = Recorder::default();
    let subscriber = tracing_subscriber::registry().with(recorder.clone());
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    microagent::run(async {
        let (stock, _s) = microagent::start(Stock);
        let (mailer, _m) = microagent::start(Mailer);
        stock.send(GetInfo).await.expect("started");
        mailer.send(GetInfo).await.expect("started");

        // The request's span, as an HTTP handler's would be.
        let request = tracing::info_span!("request");
        let ask = GetStock { item: "tea".into() };
        let bus = Bus::current();
        let call = bus.call("web", ask, Duration::from_secs(5));
        let answers = call.instrument(request).await.expect("answered");
        assert_eq!(answers.one::<u32>().expect("one answer"), 3);

        let start = Instant::now();
        while Broker::current()
            .dead_letters("span-mail")
            .await
            .unwrap()
            .is_empty()
        {
            assert!(start.elapsed() < HANG, "the mail was never dead-lettered");
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    });

    let spans = recorder.spans().clone();
    let named =
        |name: &str| -> Vec<&Recorded> { spans.iter().filter(|s| s.name == name).collect() };
    let one = |name: &str| -> &Recorded {
        let found = named(name);
        assert_eq!(found.len(), 1, "one span `{name}` in {spans:#?}");
        found[0]
    };
    let field = |span: &Recorded, key: &str| span.fields.get(key).cloned().unwrap_or_default();

    let request = one("request");
    assert_eq!(request.parent, None);

    let call = one("call get_stock");
    assert_eq!(
        call.parent,
        Some(request.id),
        "the call is the request's child"
    );
    assert_eq!(field(call, "otel.kind"), "producer");
    assert_eq!(field(call, "messaging.system"), "in-process");
    assert_eq!(field(call, "messaging.destination.name"), "get_stock");
    assert_eq!(field(call, "messaging.operation.type"), "send");
    assert_eq!(field(call, "messaging.operation.name"), "call");
    assert_eq!(field(call, "microagent.answers"), "1");

    let receive = one("process get_stock");
    assert_eq!(
        receive.parent,
        Some(call.id),
        "the receiver's run is the call's child"
    );
    assert_eq!(field(receive, "otel.kind"), "consumer");
    assert_eq!(field(receive, "messaging.operation.type"), "process");
    assert_eq!(field(receive, "microagent.agent"), "Stock");
    assert_eq!(field(receive, "microagent.handler"), "get_stock");

    let send = one("send span-mail");
    assert_eq!(
        send.parent,
        Some(receive.id),
        "the send is the receiver run's child"
    );
    assert_eq!(field(send, "messaging.destination.name"), "span-mail");
    let id = field(send, "messaging.message.id");
    assert!(!id.is_empty(), "the send names its message: {send:?}");

    let attempts = named("process span-mail");
    assert_eq!(attempts.len(), 2, "two attempts: {attempts:#?}");
    for (attempt, run) in attempts.iter().enumerate() {
        assert_eq!(run.parent, Some(send.id), "an attempt is the send's child");
        assert_eq!(field(run, "microagent.attempt"), (attempt + 1).to_string());
        assert_eq!(field(run, "messaging.message.id"), id);
        assert_eq!(field(run, "messaging.system"), "in-process");
        assert_eq!(field(run, "microagent.agent"), "Mailer");
        assert_eq!(field(run, "otel.status_code"), "ERROR");
        assert_eq!(field(run, "error.type"), "failed");
        assert_eq!(
            run.events,
            ["mailing tea"],
            "what the run traces carries its span"
        );
    }

    let tick = one("run tick");
    assert_eq!(tick.parent, None);
    assert_eq!(field(tick, "microagent.kind"), "periodic");
    let hook = one("pre_start open");
    assert_eq!(field(hook, "microagent.stage"), "pre_start");
    assert_eq!(field(hook, "microagent.agent"), "Mailer");
    assert!(
        spans
            .iter()
            .filter(|s| s.name != "request")
            .all(|s| s.closed),
        "every span closed: {spans:#?}"
    );
}
