"""CPU kombu's Redis transport costs a consumer per message (received, recorded as
unacknowledged, acknowledged: what a Celery worker does for each task), with kombu as
shipped (a new redis-py client per operation) and with ``pollstr.kombu_fixes`` (one
client per channel and pool). Interleaved, repetition by repetition, in one run:

    python -m benchmarks.broker_cost [--messages 1000] [--repetitions 5] [--redis-url URL]

The figure is this process's own CPU counter over the consuming loop (the messages are
published before it starts), against a real Redis.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from benchmarks.stats import medians_lines  # noqa: E402


def consume(url: str, create_client: Callable[..., Any], messages: int) -> float:
    """CPU milliseconds per message consumed and acknowledged, with ``create_client`` as
    kombu's ``Channel._create_client``."""
    import redis
    from kombu import Connection, Consumer, Producer, Queue
    from kombu.transport import redis as kombu_redis

    kombu_redis.Channel._create_client = create_client  # type: ignore[method-assign]
    prefix = f"bench-broker-{secrets.token_hex(3)}:"
    try:
        with Connection(url, transport_options={"global_keyprefix": prefix}) as connection:
            queue = Queue("bench")
            producer = Producer(connection.channel(), routing_key="bench")
            queue(producer.channel).declare()
            for number in range(messages):
                producer.publish({"n": number}, routing_key="bench")
            done = 0

            def on_message(body: Any, message: Any) -> None:
                nonlocal done
                message.ack()
                done += 1

            channel = connection.channel()
            channel.basic_qos(prefetch_count=10)
            with Consumer(channel, [queue], callbacks=[on_message]):
                started = time.process_time()
                while done < messages:
                    connection.drain_events(timeout=5)
                return (time.process_time() - started) * 1000 / messages
    finally:
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    args = parser.parse_args(argv)

    from kombu.transport import redis as kombu_redis

    from pollstr import kombu_fixes

    kombu_fixes.apply()
    patched = kombu_redis.Channel._create_client
    modes = {
        "kombu as shipped (a client per operation)": patched.__wrapped__,  # type: ignore[attr-defined]
        "pollstr.kombu_fixes (one client per pool)": patched,
    }
    results: dict[str, list[float]] = {name: [] for name in modes}
    print(f"load average before: {Path('/proc/loadavg').read_text().strip()}")
    for _ in range(args.repetitions):
        for name, create_client in modes.items():
            results[name].append(consume(args.redis_url, create_client, args.messages))
    kombu_redis.Channel._create_client = patched  # type: ignore[method-assign]
    print(f"load average after: {Path('/proc/loadavg').read_text().strip()}")
    print("CPU per message consumed and acknowledged, median of the repetitions:")
    print("\n".join(medians_lines(results, unit="ms", digits=3)))


if __name__ == "__main__":
    main()
