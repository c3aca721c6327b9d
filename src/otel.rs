//! OpenTelemetry (feature `otel`): the crate's spans exported over OTLP,
//! and the W3C trace context carried in message headers so that a
//! consumer's or receiver's run in another process is the child of the
//! send.
//!
//! A [`Launcher`](crate::Launcher) built from a configuration with an
//! `[otel]` section installs the exporter before its agents start and
//! flushes it after they stopped, so the spans of the last messages of a
//! graceful stop are not lost:
//!
//! ```toml
//! [otel]
//! endpoint = "http://127.0.0.1:4318"   # the collector's OTLP/HTTP address
//! protocol = "http/protobuf"           # or "http/json"
//! service_name = "shop"                # the binary's name by default
//! ```
//!
//! Without a configuration, [`install`] does the same by hand. An
//! application with its own `tracing` subscriber adds its own
//! `tracing-opentelemetry` layer instead: the crate's spans go to it, and
//! the trace context travels in the headers all the same.
//!
//! Propagation needs headers: AMQP and NATS carry `traceparent` (and
//! `tracestate`); the Redis wire format of the Python original has no
//! place for them, so over Redis a run starts a trace of its own.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

use crate::LOG_TARGET;

/// How spans are exported: to which collector, in which encoding, under
/// which service name.
#[derive(Clone, PartialEq, Eq)]
pub struct OtelConfig {
    endpoint: String,
    json: bool,
    service_name: Option<String>,
    timeout: Duration,
}

impl fmt::Debug for OtelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelConfig")
            .field("endpoint", &crate::backend::redact(&self.endpoint))
            .field("protocol", &self.protocol())
            .field("service_name", &self.service_name)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl OtelConfig {
    /// Spans to the collector at `endpoint` (its OTLP/HTTP base address,
    /// as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it: `/v1/traces` is added),
    /// in protobuf.
    pub fn new(endpoint: impl Into<String>) -> OtelConfig {
        OtelConfig {
            endpoint: endpoint.into(),
            json: false,
            service_name: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// In OTLP's JSON encoding (`http/json`) rather than protobuf.
    pub fn json(mut self, json: bool) -> OtelConfig {
        self.json = json;
        self
    }

    /// The service's name (`service.name`); the binary's file name by
    /// default.
    pub fn service_name(mut self, name: impl Into<String>) -> OtelConfig {
        self.service_name = Some(name.into());
        self
    }

    /// How long one export may take (10 s by default).
    pub fn timeout(mut self, timeout: Duration) -> OtelConfig {
        self.timeout = timeout;
        self
    }

    /// The OTLP protocol's name: `http/protobuf` or `http/json`.
    pub fn protocol(&self) -> &'static str {
        match self.json {
            true => "http/json",
            false => "http/protobuf",
        }
    }

    /// The URL spans are posted to.
    fn traces_url(&self) -> String {
        let base = self.endpoint.trim_end_matches('/');
        match base.ends_with("/v1/traces") {
            true => base.to_owned(),
            false => format!("{base}/v1/traces"),
        }
    }

    fn service(&self) -> String {
        self.service_name.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|path| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "microagent".to_owned())
        })
    }
}

/// Why the exporter could not be installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    /// The exporter refused its configuration (an endpoint that is not a
    /// URL, ...).
    #[error("the OTLP exporter: {0}")]
    Exporter(String),
    /// A `tracing` subscriber is installed already: the application's
    /// own (give it a `tracing-opentelemetry` layer instead).
    #[error("a tracing subscriber is installed already; add a tracing-opentelemetry layer to it")]
    SubscriberSet,
}

/// The installed exporter: flushes and stops when dropped or
/// [`shutdown`](OtelGuard::shutdown).
pub struct OtelGuard {
    provider: Option<SdkTracerProvider>,
    /// How long the last export may take.
    timeout: Duration,
}

impl fmt::Debug for OtelGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelGuard").finish_non_exhaustive()
    }
}

impl OtelGuard {
    /// Exports what is left and stops the exporter: a collector that is
    /// down delays this by the export timeout at most.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown_with_timeout(self.timeout) {
                log::warn!(target: LOG_TARGET, "otel: the last spans were not all exported: {e}");
            }
        }
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Installs the process's `tracing` subscriber with an OpenTelemetry
/// layer that exports spans (level `INFO` and above) over OTLP/HTTP from
/// a thread of its own, in batches. Keep the guard for as long as the
/// process runs; dropping it flushes.
pub fn install(config: &OtelConfig) -> Result<OtelGuard, OtelError> {
    let protocol = match config.json {
        true => Protocol::HttpJson,
        false => Protocol::HttpBinary,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(config.traces_url())
        .with_timeout(config.timeout)
        .build()
        .map_err(|e| OtelError::Exporter(e.to_string()))?;
    let resource = Resource::builder()
        .with_service_name(config.service())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("microagent"));
    // The exporter's own HTTP client must not trace into itself.
    let filter = Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("reqwest", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("hyper_util", LevelFilter::OFF)
        .with_target("opentelemetry", LevelFilter::OFF);
    let subscriber = tracing_subscriber::registry().with(layer.with_filter(filter));
    let guard = OtelGuard {
        provider: Some(provider),
        timeout: config.timeout,
    };
    tracing::subscriber::set_global_default(subscriber).map_err(|_| OtelError::SubscriberSet)?;
    log::info!(
        target: LOG_TARGET,
        "otel: spans of `{}` to {} ({})",
        config.service(),
        crate::backend::redact(&config.traces_url()),
        config.protocol()
    );
    Ok(guard)
}

/// The W3C trace context headers of `span` (`traceparent`, and
/// `tracestate` when it has one); `None` when the span is not recorded by
/// an OpenTelemetry layer.
pub(crate) fn traceparent(span: &tracing::Span) -> Option<String> {
    let mut headers = Headers::default();
    TraceContextPropagator::new().inject_context(&span.context(), &mut headers);
    headers.0.remove("traceparent")
}

/// Makes `span` the child of the remote span `traceparent` names.
pub(crate) fn set_remote_parent(span: &tracing::Span, traceparent: &str) {
    let mut headers = Headers::default();
    headers
        .0
        .insert("traceparent".to_owned(), traceparent.to_owned());
    let parent = TraceContextPropagator::new().extract(&headers);
    // A span no OpenTelemetry layer records has nothing to set.
    let _ = span.set_parent(parent);
}

/// Trace context headers on their way in or out.
#[derive(Default)]
struct Headers(HashMap<String, String>);

impl Injector for Headers {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

impl Extractor for Headers {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}
