"""Python microagent 1.9 producing to and consuming from queues a Rust
agent shares, on Redis, RabbitMQ or Kafka (by the URL's scheme). Driven by
tests/redis_broker.rs:

    python queues.py URL TO_RUST FROM_RUST COUNT

Sends COUNT messages `{"id": i, "source": "python"}` to queue TO_RUST, and
consumes queue FROM_RUST, printing `python handled <id> from <source>` for
each message (flushed). Exits after it handled COUNT messages; messages from
source `probe` are printed and not counted (the Kafka consumer reads from
the latest offset once it has started: the Rust side probes until it hears
one, then sends).
"""
import asyncio
import sys

from microagent import MicroAgent, Queue, consumer
from microagent.tools.redis import RedisBroker


def make_broker(dsn):
    if dsn.startswith("amqp"):
        from microagent.tools.amqp import AMQPBroker

        return AMQPBroker(dsn)
    if dsn.startswith("kafka"):
        from microagent.tools.kafka import KafkaBroker

        return KafkaBroker(dsn)
    return RedisBroker(dsn)


async def main(dsn, to_rust, from_rust, count):
    Queue(name=to_rust)
    inbox = Queue(name=from_rust)
    done = asyncio.Event()
    handled = set()

    class PyConsumer(MicroAgent):
        @consumer(inbox)
        async def handle(self, id, source, **kwargs):
            print(f"python handled {id} from {source}", flush=True)
            if source != "probe":
                handled.add(id)
            if len(handled) == count:
                done.set()

    broker = make_broker(dsn)
    agent = PyConsumer(broker=broker)
    await agent.start()
    for i in range(count):
        await getattr(broker, to_rust).send({"id": i, "source": "python"})
    print("python sent", flush=True)
    await asyncio.wait_for(done.wait(), 60)
    print("python done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
