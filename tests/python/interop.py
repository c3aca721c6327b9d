"""A Python microagent 1.9 agent on the same Redis as a Rust one.

Driven by tests/redis_bus.rs (`python_and_rust_agents_share_one_redis`):

    python interop.py REDIS_URL PREFIX

It prints one line per thing it saw, flushed, for the Rust test to read:
- `ready` once its own receivers answer it (its subscriptions are live:
  the original binds them in background tasks);
- `got user_created <user_id> from <sender>` for each signal a Rust agent
  sent it;
- after the Rust side sends `go`: it sends `py_hello` to the Rust agent,
  then calls the Rust responder `rs_stock` several times while the Rust
  side calls it too, printing `answer <json>` for each answer;
- `done` before it exits.
"""
import asyncio
import json
import sys

from microagent import MicroAgent, Signal, receiver
from microagent.tools.redis import RedisSignalBus

user_created = Signal(name="user_created", providing_args=["user_id"])
py_stock = Signal(name="py_stock", providing_args=["item"])
rs_stock = Signal(name="rs_stock", providing_args=["item"])
py_hello = Signal(name="py_hello", providing_args=["text"])
go = Signal(name="go", providing_args=["rounds"])

CALL_TIMEOUT = 30


def say(line):
    print(line, flush=True)


async def call(bound, timeout=CALL_TIMEOUT, **kwargs):
    # The original cancels the calling task `timeout` seconds after a call,
    # even one that was answered: call from a task of its own.
    return await asyncio.create_task(bound.call("python", timeout=timeout, **kwargs))


class PyAgent(MicroAgent):
    @receiver(user_created)
    async def created(self, user_id, sender, **kwargs):
        say(f"got user_created {user_id} from {sender}")

    @receiver(py_stock)
    async def stock(self, item, **kwargs):
        return 42 if item == "apple" else 0

    @receiver(go)
    async def go(self, rounds, **kwargs):
        self.rounds = rounds
        self.started.set()


async def main(dsn, prefix):
    bus = RedisSignalBus(dsn, prefix=prefix)
    agent = PyAgent(bus=bus)
    agent.started = asyncio.Event()
    await agent.start()
    # The original subscribes (to signals and to answers) in background
    # tasks: ask itself, briefly, until both are live.
    while (await call(bus.py_stock, timeout=1, item="apple")).get("PyAgent.stock") != 42:
        await asyncio.sleep(0.05)
    say("ready")
    await agent.started.wait()
    await bus.py_hello.send("python", text="hello from python")
    for round in range(agent.rounds):
        answer = await call(bus.rs_stock, item=f"pear{round}")
        say("answer " + json.dumps(answer, sort_keys=True))
    say("done")
    await bus.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
