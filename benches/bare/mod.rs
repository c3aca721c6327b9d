//! The bare counterparts of the queue pairs, as a user would write them
//! with the client library alone, shared by the broker and scale benches.
//! Each handled message decodes as `T` and counts with `one_done`.

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::support::one_done;

/// Starts the batched reliable loop on Redis: up to `take` LMOVEs from
/// `queue` into `processing` in one pipeline (one BLMOVE when the queue is
/// empty), decode and handle, then the LREMs in one pipeline.
pub(crate) async fn redis_consumer<T: DeserializeOwned + 'static>(
    client: &redis::Client,
    (queue, processing): (String, String),
    take: usize,
) {
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("Redis is reachable");
    actix_rt::spawn(async move {
        loop {
            let mut pipe = redis::pipe();
            for _ in 0..take {
                pipe.cmd("LMOVE")
                    .arg(&queue)
                    .arg(&processing)
                    .arg("LEFT")
                    .arg("RIGHT");
            }
            let taken: Vec<Option<Vec<u8>>> =
                pipe.query_async(&mut connection).await.expect("LMOVE");
            let mut bodies: Vec<Vec<u8>> = taken.into_iter().flatten().collect();
            if bodies.is_empty() {
                let body: Option<Vec<u8>> = redis::cmd("BLMOVE")
                    .arg(&queue)
                    .arg(&processing)
                    .arg("LEFT")
                    .arg("RIGHT")
                    .arg(1.0)
                    .query_async(&mut connection)
                    .await
                    .expect("BLMOVE");
                bodies.extend(body);
            }
            let mut settle = redis::pipe();
            for body in &bodies {
                let message: T = serde_json::from_slice(body).expect("our own JSON");
                std::hint::black_box(&message);
                one_done();
                settle
                    .cmd("LREM")
                    .arg(&processing)
                    .arg(1)
                    .arg(body)
                    .ignore();
            }
            if !bodies.is_empty() {
                settle
                    .query_async::<()>(&mut connection)
                    .await
                    .expect("LREM");
            }
        }
    });
}

/// Starts a `lapin` consumer of `queue` on its own channel of
/// `connection`, with `basic_qos(prefetch)`: decode, handle, and
/// acknowledge without holding up the next delivery (as ours settles).
pub(crate) async fn amqp_consumer<T: DeserializeOwned + 'static>(
    connection: &lapin::Connection,
    queue: &str,
    (tag, prefetch): (&str, u16),
) {
    use futures_util::StreamExt;
    use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
    use lapin::types::FieldTable;

    let channel = connection.create_channel().await.expect("a channel");
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut deliveries = channel
        .basic_consume(
            queue,
            tag,
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consuming");
    actix_rt::spawn(async move {
        let _channel = channel;
        while let Some(Ok(delivery)) = deliveries.next().await {
            let message: T = serde_json::from_slice(&delivery.data).expect("our own JSON");
            std::hint::black_box(&message);
            one_done();
            actix_rt::spawn(async move {
                delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .expect("ack");
            });
        }
    });
}

/// `RPUSH`es `body` to `queue`; resolves with Redis's reply.
pub(crate) async fn redis_push(
    mut connection: redis::aio::MultiplexedConnection,
    queue: &str,
    body: Vec<u8>,
) {
    redis::cmd("RPUSH")
        .arg(queue)
        .arg(body)
        .query_async::<i64>(&mut connection)
        .await
        .expect("pushed");
}

/// Publishes `body` to `queue` on a confirming channel; resolves with the
/// broker's confirm.
pub(crate) async fn amqp_publish(publisher: &lapin::Channel, queue: &str, body: Vec<u8>) {
    use lapin::options::BasicPublishOptions;
    use lapin::BasicProperties;

    publisher
        .basic_publish(
            "",
            queue,
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default(),
        )
        .await
        .expect("published")
        .await
        .expect("confirmed");
}

/// Makes a JetStream work-queue stream `name` on `subject` and starts
/// `consumers` pulls of one durable consumer of it, each pulling `batch`
/// at a time: decode, handle, and acknowledge in a task of its own (as
/// ours settles).
#[cfg(feature = "nats")]
pub(crate) async fn nats_consumers<T: DeserializeOwned + 'static>(
    js: &async_nats::jetstream::Context,
    (name, subject): (&str, &str),
    (batch, consumers): (usize, usize),
) {
    use async_nats::jetstream::{consumer::pull, stream, AckKind};
    use futures_util::StreamExt;

    let orders = js
        .create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![subject.to_owned()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("a stream");
    let consumer = orders
        .create_consumer(pull::Config {
            durable_name: Some(name.to_owned()),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("a consumer");
    for _ in 0..consumers {
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(batch)
            .messages()
            .await
            .expect("pulling");
        actix_rt::spawn(async move {
            while let Some(Ok(message)) = messages.next().await {
                let decoded: T = serde_json::from_slice(&message.payload).expect("our JSON");
                std::hint::black_box(&decoded);
                one_done();
                actix_rt::spawn(async move {
                    message.ack_with(AckKind::Ack).await.expect("ack");
                });
            }
        });
    }
}

/// Publishes `body` on `subject` and waits for JetStream's ack.
#[cfg(feature = "nats")]
pub(crate) async fn nats_publish(
    js: async_nats::jetstream::Context,
    subject: String,
    body: Vec<u8>,
) {
    let ack = js.publish(subject, body.into()).await.expect("published");
    ack.await.expect("stored");
}
