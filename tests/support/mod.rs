//! Helpers shared by the integration tests: the bus, broker and test-kit
//! tests build on the same ones.
//!
//! - [`events`]: an ordered record of what happened ([`Events`]);
//! - [`run`]: running an agent until it stops, pausing inside hooks;
//! - [`health`]: the health endpoints on a bound port, readiness over HTTP;
//! - [`redis`]: the shared Redis from `REDIS_URL`, private `redis-server`s (and a [`redis::Switch`] to stop and start one);
//! - [`matrix`]: one test body on every bus or broker backend of the build;
//! - [`net`]: free loopback ports, HTTP/1.1 by hand;
//! - [`nats`]: private `nats-server`s, and publishing by hand as a
//!   misbehaving peer would;
//! - [`rabbit`]: a private RabbitMQ node, for the tests that restart one;
//! - [`kafka`]: librdkafka's mock cluster, in the test's process;
//! - [`tempdir`]: a directory of a test's own ([`TempDir`]);
//! - [`process`]: spawning the example and fixture binaries as real
//!   processes, reading their output, signalling them ([`process::Proc`]).
//!
//! Each test file takes what it needs with `mod support;`.
#![allow(dead_code, unreachable_pub)]

pub(crate) mod events;
#[cfg(feature = "web")]
pub(crate) mod health;
pub(crate) mod kafka;
pub(crate) mod matrix;
pub(crate) mod nats;
pub(crate) mod net;
pub(crate) mod process;
pub(crate) mod rabbit;
pub(crate) mod redis;
pub(crate) mod run;
pub(crate) mod tempdir;

// Not every test file uses every helper.
#[allow(unused_imports)]
pub(crate) use events::Events;
#[allow(unused_imports)]
pub(crate) use run::{pause, run_until};
#[allow(unused_imports)]
pub(crate) use tempdir::TempDir;

/// An error type for hooks that fail.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Boom(pub &'static str);
