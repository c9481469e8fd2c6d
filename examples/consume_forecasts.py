"""A service consuming streammeta's forecasts: decode and check each message, drop
duplicates, keep the latest forecast per entity.

    python examples/consume_forecasts.py --bootstrap-servers 127.0.0.1:9092
    python examples/consume_forecasts.py --bootstrap-servers HOST:PORT \\
        --topic streammeta.forecasts --group my-service --max-forecasts 1000

Start ``streammeta demo`` (it prints its broker's address) or a daemon first. The
consumer joins a group, reads from the earliest offset the group has not committed,
prints one line per new forecast and, at the end (Ctrl-C, --max-forecasts or
--idle-timeout), a summary and the latest forecast of a few entities.

It commits offsets after it has handled a batch: a crash re-reads at most that
batch, and the duplicates it then sees are dropped like the daemon's own.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from kafka import KafkaConsumer

from streammeta.client import ContractError, Deduplicator, LatestForecasts, decode_forecast


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers", required=True, metavar="HOST:PORT")
    parser.add_argument("--topic", default="streammeta.forecasts")
    parser.add_argument("--group", default="forecast-consumer-example")
    parser.add_argument("--max-forecasts", type=int, default=0, metavar="N",
                        help="stop after N new forecasts (default 0: never)")
    parser.add_argument("--idle-timeout", type=float, default=0.0, metavar="SECONDS",
                        help="stop after this long without a message (default 0: never)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only the summary")
    args = parser.parse_args(argv)

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    consumer = KafkaConsumer(
        args.topic, bootstrap_servers=args.bootstrap_servers.split(","), group_id=args.group,
        auto_offset_reset="earliest", enable_auto_commit=False)
    seen, latest = Deduplicator(), LatestForecasts()
    new = invalid = 0
    last_message = time.monotonic()
    try:
        while not stopping and not (args.max_forecasts and new >= args.max_forecasts):
            if args.idle_timeout and time.monotonic() - last_message > args.idle_timeout:
                break
            batches = consumer.poll(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    last_message = time.monotonic()
                    try:
                        forecast = decode_forecast(record.value, key=record.key,
                                                   headers=record.headers)
                    except ContractError as exc:  # a producer bug: report it, go on
                        invalid += 1
                        print(f"invalid message at {record.topic}/{record.partition}/"
                              f"{record.offset}: {exc}", file=sys.stderr)
                        continue
                    if not seen.first_time(forecast):
                        continue
                    new += 1
                    latest.update(forecast)
                    if not args.quiet:
                        print(f"forecast {forecast.entity} origin={forecast.origin} "
                              f"v{forecast.model_version} warm={forecast.warm} "
                              f"next={forecast.point[0]:.4g} "
                              f"[{forecast.quantiles[min(forecast.quantiles)][0]:.4g}, "
                              f"{forecast.quantiles[max(forecast.quantiles)][0]:.4g}]")
            if batches:
                consumer.commit()  # everything handled so far
    finally:
        consumer.close()
    print(f"summary: {new} forecasts, {seen.dropped} duplicates dropped, {invalid} invalid, "
          f"{len(latest)} entities")
    for forecast in list(latest)[:3]:
        print(f"latest {forecast.entity}: origin {forecast.origin}, model version "
              f"{forecast.model_version}, {forecast.horizon} steps, first {forecast.point[0]:.4g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
