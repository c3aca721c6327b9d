//! SIGINT and SIGTERM, owned by the launcher.

use actix_rt::signal::unix::{signal, Signal, SignalKind};
use futures_util::future::{select, Either};

use super::TARGET;

/// SIGINT and SIGTERM, owned by the launcher.
pub(super) struct Signals {
    interrupt: Option<Signal>,
    terminate: Option<Signal>,
}

impl Signals {
    pub(super) fn new() -> Self {
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                log::warn!(target: TARGET, "cannot listen for {name}: {e}");
                None
            }
        };
        Signals {
            interrupt: listen(SignalKind::interrupt(), "SIGINT"),
            terminate: listen(SignalKind::terminate(), "SIGTERM"),
        }
    }

    /// The next signal's number.
    pub(super) async fn next(&mut self) -> i32 {
        async fn one(signal: &mut Option<Signal>, number: i32) -> i32 {
            if let Some(s) = signal {
                if s.recv().await.is_some() {
                    return number;
                }
            }
            // Not listening (or the stream ended): never.
            std::future::pending().await
        }
        let interrupt = one(&mut self.interrupt, SIGINT);
        let terminate = one(&mut self.terminate, SIGTERM);
        match select(Box::pin(interrupt), Box::pin(terminate)).await {
            Either::Left((n, _)) | Either::Right((n, _)) => n,
        }
    }
}

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

pub(super) fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}
