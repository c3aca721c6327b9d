//! The backend matrix: one test body run on every bus or broker backend
//! this build has, each backend in a module of its own (`in_process::name`,
//! `redis::name`, `redis_cluster::name`, `amqp::name`, `nats::name`,
//! `kafka::name`, and `kafka_kip848::name` for Kafka's consumer group
//! protocol), so the runner's summary says which ran.
//!
//! - A backend whose cargo feature is off is not compiled (the test does
//!   not exist in that build).
//! - A backend whose server was not named when the tests were built
//!   (`REDIS_URL`, `AMQP_URL`, `NATS_URL`) shows as ignored, never as
//!   passed.
//!
//! ```ignore
//! on_backends!(bus: [in_process, redis] => a_call_gets_every_answer, ...);
//! fn a_call_gets_every_answer(backend: Backend) { backend.run_bus(async { ... }) }
//! ```

use std::future::Future;

use microagent::broker::{Broker, BrokerConfig};
use microagent::bus::{Bus, BusConfig};

/// The backend a test runs on; servers come with a prefix or namespace of
/// the test's own, so tests running at once do not meet.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    InProcess,
    Redis(String),
    /// A Redis Cluster of this process's (`redis_cluster::name`).
    RedisCluster(String),
    Amqp(String),
    Nats(String),
    /// A mock Kafka cluster of the test's own (`kafka::name`).
    Kafka(String),
}

impl Backend {
    /// The shared Redis (`REDIS_URL`).
    pub(crate) fn redis() -> Backend {
        Backend::Redis(super::redis::url())
    }

    /// The Redis Cluster the tests of this process share (three masters
    /// and their replicas, started by the first test that asks).
    pub(crate) fn redis_cluster() -> Backend {
        Backend::RedisCluster(super::redis::RedisCluster::shared_url().to_owned())
    }

    /// The shared RabbitMQ (`AMQP_URL`).
    pub(crate) fn amqp() -> Backend {
        Backend::Amqp(super::redis::amqp_url())
    }

    /// The shared NATS server (`NATS_URL`).
    #[allow(dead_code)]
    pub(crate) fn nats() -> Backend {
        Backend::Nats(super::redis::nats_url())
    }

    /// A Kafka cluster of the test's own (librdkafka's mock cluster).
    #[cfg(feature = "kafka")]
    pub(crate) fn kafka() -> Backend {
        Backend::Kafka(super::kafka::mock_cluster())
    }

    /// A Kafka cluster of the test's own whose consumers use the consumer
    /// group protocol of KIP-848 (`?group.protocol=consumer`).
    #[cfg(feature = "kafka")]
    pub(crate) fn kafka_kip848() -> Backend {
        let url = super::kafka::mock_cluster();
        Backend::Kafka(format!("{url}?group.protocol=consumer"))
    }

    /// Whether it is a bus or broker on a server.
    pub(crate) fn is_remote(&self) -> bool {
        !matches!(self, Backend::InProcess)
    }

    fn url(&self) -> Option<&str> {
        match self {
            Backend::InProcess => None,
            Backend::Redis(url)
            | Backend::RedisCluster(url)
            | Backend::Amqp(url)
            | Backend::Nats(url)
            | Backend::Kafka(url) => Some(url),
        }
    }

    /// Its bus configuration, with a channel prefix of the test's own
    /// (in-process for a broker-only backend).
    pub(crate) fn bus_config(&self) -> BusConfig {
        match self {
            Backend::InProcess | Backend::Amqp(_) | Backend::Kafka(_) => BusConfig::in_process(),
            Backend::Redis(url) | Backend::RedisCluster(url) | Backend::Nats(url) => {
                BusConfig::from_url(url)
                    .expect("a bus backend of this build")
                    .prefix(&super::redis::prefix())
                    .expect("a valid prefix")
            }
        }
    }

    /// Its broker configuration, with a namespace of the test's own.
    pub(crate) fn broker_config(&self) -> BrokerConfig {
        // Kafka's topic names take no `:`.
        let separator = if matches!(self, Backend::Kafka(_)) {
            "."
        } else {
            ":"
        };
        match self.url() {
            None => BrokerConfig::in_process(),
            Some(url) => BrokerConfig::from_url(url)
                .expect("a broker backend of this build")
                .namespace(&format!("{}{separator}", super::redis::prefix())),
        }
    }

    /// Runs `body` under `microagent::run`, with this bus installed.
    pub(crate) fn run_bus<F: Future>(&self, body: F) -> F::Output {
        let config = self.bus_config();
        microagent::run(async move {
            Bus::connect(config).await.expect("the bus connects");
            body.await
        })
    }

    /// Runs `body` under `microagent::run`, with this broker installed.
    pub(crate) fn run_broker<F: Future>(&self, body: F) -> F::Output {
        let config = self.broker_config();
        microagent::run(async move {
            Broker::connect(config).await.expect("the broker connects");
            body.await
        })
    }
}

/// Each named test function (taking a [`Backend`]) on each listed
/// backend: `on_backends!([in_process, redis, amqp] => name, ...)`.
#[allow(unused_macros)]
macro_rules! on_backends {
    ([$($backend:ident),*] => $($name:ident),* $(,)?) => {
        $crate::support::matrix::on_backends!(@each [$($backend),*] [$($name),*]);
    };
    (@each [] $names:tt) => {};
    (@each [$first:ident $(, $rest:ident)*] $names:tt) => {
        $crate::support::matrix::on_backends!(@one $first $names);
        $crate::support::matrix::on_backends!(@each [$($rest),*] $names);
    };
    (@one in_process [$($name:ident),*]) => {
        mod in_process {
            $(#[test]
            fn $name() {
                super::$name($crate::support::matrix::Backend::InProcess)
            })*
        }
    };
    (@one redis [$($name:ident),*]) => {
        #[cfg(feature = "redis")]
        mod redis {
            $(#[test]
            #[cfg_attr(not(service_redis), ignore = "needs REDIS_URL")]
            fn $name() {
                super::$name($crate::support::matrix::Backend::redis())
            })*
        }
    };
    (@one redis_cluster [$($name:ident),*]) => {
        // A cluster of the test process's own (`redis-server` is on every
        // machine): nothing to name, nothing to skip.
        #[cfg(feature = "redis")]
        mod redis_cluster {
            $(#[test]
            fn $name() {
                super::$name($crate::support::matrix::Backend::redis_cluster())
            })*
        }
    };
    (@one amqp [$($name:ident),*]) => {
        #[cfg(feature = "amqp")]
        mod amqp {
            $(#[test]
            #[cfg_attr(not(service_amqp), ignore = "needs AMQP_URL")]
            fn $name() {
                super::$name($crate::support::matrix::Backend::amqp())
            })*
        }
    };
    (@one kafka [$($name:ident),*]) => {
        // A mock cluster of the test's own (nothing to name or skip).
        #[cfg(feature = "kafka")]
        mod kafka {
            $(#[test]
            fn $name() {
                super::$name($crate::support::matrix::Backend::kafka())
            })*
        }
    };
    (@one kafka_kip848 [$($name:ident),*]) => {
        #[cfg(feature = "kafka")]
        mod kafka_kip848 {
            $(#[test]
            fn $name() {
                super::$name($crate::support::matrix::Backend::kafka_kip848())
            })*
        }
    };
    (@one nats [$($name:ident),*]) => {
        #[cfg(feature = "nats")]
        mod nats {
            $(#[test]
            #[cfg_attr(not(service_nats), ignore = "needs NATS_URL")]
            fn $name() {
                super::$name($crate::support::matrix::Backend::nats())
            })*
        }
    };
}

#[allow(unused_imports)]
pub(crate) use on_backends;
