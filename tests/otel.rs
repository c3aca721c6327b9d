//! One order's trace across two processes, exported by the real OTLP
//! exporter (feature `otel`, `[otel]` in the configuration, JSON
//! encoding) to a collector this test runs: the HTTP request's span, the
//! RPC call it makes, the receiver's run in the other process, the queue
//! message that receiver sends, and the consumer's run back in the first
//! process are one trace, each the child of the one before, with the
//! OpenTelemetry messaging attributes; on the NATS bus with an AMQP
//! broker, and with a NATS JetStream broker. The exporter is flushed at
//! the launcher's graceful stop: the spans arrive although the processes
//! exit right after the message.

mod support;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::Value;
use support::net::{free_addr, http};
use support::process::{Proc, HANG};
use support::redis as services;

/// A span as the collector got it.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    trace: String,
    id: String,
    parent: String,
    name: String,
    kind: u64,
    attributes: BTreeMap<String, Value>,
}

/// A post's content type and body.
type Post = (String, Vec<u8>);

/// Every span posted to `/v1/traces` in JSON, and every post.
#[derive(Default, Clone)]
struct Collected {
    spans: Arc<Mutex<Vec<Exported>>>,
    posts: Arc<Mutex<Vec<Post>>>,
}

impl Collected {
    fn spans(&self) -> Vec<Exported> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn posts(&self) -> Vec<Post> {
        self.posts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// An attribute's value: `{"stringValue": ..}`, `{"intValue": ..}`, ...
fn any_value(value: &Value) -> Value {
    value
        .as_object()
        .and_then(|o| o.values().next())
        .cloned()
        .unwrap_or(Value::Null)
}

fn attributes(list: &Value) -> BTreeMap<String, Value> {
    let list = list.as_array().cloned().unwrap_or_default();
    list.iter()
        .filter_map(|a| Some((a["key"].as_str()?.to_owned(), any_value(&a["value"]))))
        .collect()
}

/// `POST /v1/traces`: kept; a JSON export's spans read.
async fn export(
    request: actix_web::HttpRequest,
    body: web::Bytes,
    into: web::Data<Collected>,
) -> HttpResponse {
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let json = content_type == "application/json";
    let post = (content_type, body.to_vec());
    into.posts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(post);
    if !json {
        // An empty ExportTraceServiceResponse in protobuf.
        return HttpResponse::Ok()
            .content_type("application/x-protobuf")
            .finish();
    }
    let Ok(export) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    collect(&export, &into);
    HttpResponse::Ok()
        .content_type("application/json")
        .body("{}")
}

/// An OTLP/HTTP collector, on its own thread: its base URL and what it
/// got.
fn collector() -> (String, Collected) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = listener.local_addr().expect("bound").to_string();
    let collected = Collected::default();
    let into = web::Data::new(collected.clone());
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(into.clone())
                    .app_data(web::PayloadConfig::new(1 << 24))
                    .route("/v1/traces", web::post().to(export))
            })
            .workers(1)
            .listen(listener)
            .expect("listens");
            let _ = server.run().await;
        });
    });
    (format!("http://{addr}"), collected)
}

fn collect(export: &Value, into: &Collected) {
    let mut spans = into.spans.lock().unwrap_or_else(PoisonError::into_inner);
    for resource in export["resourceSpans"].as_array().into_iter().flatten() {
        let service = attributes(&resource["resource"]["attributes"])
            .get("service.name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let text = |key: &str| span[key].as_str().unwrap_or_default().to_owned();
                spans.push(Exported {
                    service: service.clone(),
                    trace: text("traceId"),
                    id: text("spanId"),
                    parent: text("parentSpanId"),
                    name: text("name"),
                    kind: span["kind"].as_u64().unwrap_or_default(),
                    attributes: attributes(&span["attributes"]),
                });
            }
        }
    }
}

/// OTLP's span kinds.
const SERVER: u64 = 2;
const PRODUCER: u64 = 4;
const CONSUMER: u64 = 5;

/// Runs the order across two processes on the NATS bus and the broker at
/// `broker_url`; checks the trace the collector got.
fn one_trace_across_two_processes(broker_url: &str, system: &str) {
    let (endpoint, collected) = collector();
    let nats = services::nats_url();
    let prefix = services::prefix();
    let namespace = format!("{prefix}-");
    let front_addr = free_addr();
    let common = |agents: &'static str, service: &'static str| {
        vec![
            ("MICROAGENT_AGENTS", agents.to_owned()),
            ("MICROAGENT_BUS__URL", nats.clone()),
            ("MICROAGENT_BUS__PREFIX", prefix.clone()),
            ("MICROAGENT_BROKER__URL", broker_url.to_owned()),
            ("MICROAGENT_BROKER__NAMESPACE", namespace.clone()),
            ("MICROAGENT_OTEL__ENDPOINT", endpoint.clone()),
            ("MICROAGENT_OTEL__PROTOCOL", "http/json".to_owned()),
            ("MICROAGENT_OTEL__SERVICE_NAME", service.to_owned()),
        ]
    };
    let spawn = |envs: Vec<(&str, String)>| {
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Proc::spawn("trace-fixture", &[], &envs)
    };
    let mut stock = spawn(common("[stock]", "stock"));
    stock.wait_line(|l| l == "stock: ready");
    let mut front_envs = common("[front, mailer]", "front");
    front_envs.push(("MICROAGENT_AGENT__FRONT__BIND", front_addr.clone()));
    let mut front = spawn(front_envs);
    front.wait_line(|l| l == "front: ready");

    // Its server starts once the agent runs.
    let start = Instant::now();
    let (status, body) = loop {
        if let Some(answer) = http(&front_addr, "GET", "/order", "") {
            break answer;
        }
        assert!(
            start.elapsed() < HANG,
            "front never answered: {}",
            front.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!((status, body.as_str()), (200, "3"), "{}", front.stderr());
    front.wait_line(|l| l == "mailed tea");

    // A graceful stop flushes each exporter.
    for process in [&mut front, &mut stock] {
        process.signal("TERM");
        assert_eq!(process.wait_code(), 0, "{}", process.stderr());
    }
    let names = [
        "GET /order",
        "call get_stock",
        "process get_stock",
        "send trace-mail",
        "process trace-mail",
    ];
    let start = Instant::now();
    let spans = loop {
        let spans = collected.spans();
        if names.iter().all(|n| spans.iter().any(|s| s.name == *n)) {
            break spans;
        }
        assert!(start.elapsed() < HANG, "not every span came: {spans:#?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let one = |name: &str| -> &Exported {
        let found: Vec<&Exported> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one `{name}` in {spans:#?}");
        found[0]
    };
    let text = |span: &Exported, key: &str| -> String {
        span.attributes
            .get(key)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .unwrap_or_default()
    };

    let request = one("GET /order");
    assert_eq!((request.service.as_str(), request.kind), ("front", SERVER));
    assert!(request.parent.is_empty(), "the request starts the trace");

    let call = one("call get_stock");
    let receive = one("process get_stock");
    let send = one("send trace-mail");
    let consume = one("process trace-mail");
    let chain = [request, call, receive, send, consume];
    for span in chain {
        assert_eq!(span.trace, request.trace, "one trace: {chain:#?}");
    }
    for pair in chain.windows(2) {
        assert_eq!(
            pair[1].parent, pair[0].id,
            "`{}` is the child of `{}`",
            pair[1].name, pair[0].name
        );
    }
    let services: Vec<&str> = chain.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(services, ["front", "front", "stock", "stock", "front"]);

    assert_eq!(call.kind, PRODUCER);
    assert_eq!(text(call, "messaging.system"), "nats");
    assert_eq!(text(call, "messaging.destination.name"), "get_stock");
    assert_eq!(text(call, "messaging.operation.name"), "call");
    assert_eq!(receive.kind, CONSUMER);
    assert_eq!(text(receive, "messaging.system"), "nats");
    assert_eq!(text(receive, "messaging.operation.type"), "process");
    assert_eq!(text(receive, "microagent.agent"), "Stock");
    assert_eq!(send.kind, PRODUCER);
    assert_eq!(text(send, "messaging.system"), system);
    assert_eq!(text(send, "messaging.destination.name"), "trace-mail");
    assert_eq!(text(send, "messaging.operation.type"), "send");
    assert_eq!(consume.kind, CONSUMER);
    assert_eq!(text(consume, "messaging.system"), system);
    assert_eq!(text(consume, "messaging.destination.name"), "trace-mail");
    assert_eq!(text(consume, "microagent.attempt"), "1");
    assert_eq!(text(consume, "microagent.agent"), "Mailer");
}

#[test]
#[cfg_attr(
    not(all(service_nats, service_amqp)),
    ignore = "needs NATS_URL and AMQP_URL"
)]
fn an_order_is_one_trace_across_two_processes_on_nats_and_amqp() {
    one_trace_across_two_processes(&services::amqp_url(), "amqp");
}

#[test]
#[cfg_attr(not(service_nats), ignore = "needs NATS_URL")]
fn an_order_is_one_trace_across_two_processes_on_nats_and_jetstream() {
    one_trace_across_two_processes(&services::nats_url(), "nats");
}

/// The default protocol: protobuf, posted to `/v1/traces` under the
/// endpoint; the last spans (a hook's) are exported at the graceful stop.
/// No server needed: the in-process bus and broker.
#[test]
fn spans_go_out_in_protobuf_by_default_and_the_last_at_the_stop() {
    let (endpoint, collected) = collector();
    let envs = [
        ("MICROAGENT_AGENTS", "[stock]"),
        ("MICROAGENT_OTEL__ENDPOINT", endpoint.as_str()),
        ("MICROAGENT_OTEL__SERVICE_NAME", "stock-alone"),
    ];
    let mut stock = Proc::spawn("trace-fixture", &[], &envs);
    stock.wait_line(|l| l == "stock: ready");
    stock.signal("TERM");
    assert_eq!(stock.wait_code(), 0, "{}", stock.stderr());
    let posts = collected.posts();
    assert!(!posts.is_empty(), "nothing was exported");
    for (content_type, _) in &posts {
        assert_eq!(content_type, "application/x-protobuf");
    }
    // Strings travel as they are in protobuf: the service and the hook's
    // span are in what was posted.
    let holds = |text: &str| {
        let text = text.as_bytes();
        posts
            .iter()
            .any(|(_, body)| body.windows(text.len()).any(|w| w == text))
    };
    assert!(
        holds("stock-alone") && holds("post_start ready"),
        "{posts:?}"
    );
}
