//! Kafka for the tests: librdkafka's mock cluster, in this process on
//! loopback ports (three brokers; topics created on first use, with four
//! partitions), with group joins at once (a real cluster waits 3 s for
//! more members by default), and KIP-848 group heartbeats every 100 ms.

/// Starts a mock cluster for the rest of the process; its
/// `kafka://` URL.
#[cfg(feature = "kafka")]
pub(crate) fn mock_cluster() -> String {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, Producer};

    // The cluster lives as long as the client that made it.
    let holder: BaseProducer = ClientConfig::new()
        .set("test.mock.num.brokers", "3")
        .create()
        .expect("a mock cluster");
    // SAFETY: the mock cluster belongs to `holder`, kept for the whole
    // process below; the calls read and set its own state.
    let servers = unsafe {
        let mock = rdkafka::bindings::rd_kafka_handle_mock_cluster(holder.client().native_ptr());
        assert!(!mock.is_null(), "the client made a mock cluster");
        rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(mock, 0);
        // KIP-848 groups: members hear of a new assignment within 100 ms.
        rdkafka::bindings::rd_kafka_mock_set_group_consumer_heartbeat_interval_ms(mock, 100);
        std::ffi::CStr::from_ptr(rdkafka::bindings::rd_kafka_mock_cluster_bootstraps(mock))
            .to_string_lossy()
            .into_owned()
    };
    Box::leak(Box::new(holder));
    format!("kafka://{servers}")
}
