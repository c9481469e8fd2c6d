"""How long a periodic checkpoint blocks the loop, and what it costs the loop meanwhile.

    python benchmarks/checkpoint.py                    # 200,000 entities
    python benchmarks/checkpoint.py --entities 1000000
    python benchmarks/checkpoint.py --stores           # save/restore: local disk vs S3 (moto)
    python benchmarks/checkpoint.py --stores --only local --entities 1000000

Fills an engine with ``--entities`` entities over 4 partitions, then measures:

* ``sync``: ``Checkpointer.save()`` — snapshot, serialise, fsync, all on the
  calling thread (what revocation and shutdown do; what periodic saves did before).
* ``background``: ``Checkpointer.save_in_background()`` — the time the call blocks
  the loop (the snapshot), the time until the file is written, and the engine's
  observations/s while the write runs beside it, against the same rounds without.

With ``--stores``, instead: the synchronous save and the restore of every partition
(into a fresh engine) to a local directory and to object storage through s3fs,
against a local S3-compatible server (moto's standalone server, started here;
``--s3-endpoint URL`` uses another one, credentials from ``AWS_*``).

Each run writes to a temporary directory (or bucket) that is removed afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator

import numpy as np

STEP = 3_600_000


def main() -> None:
    from streammeta import config as config_mod
    from streammeta.config import CheckpointConfig
    from streammeta.online.engine import Engine
    from streammeta.persistence.checkpoint import Checkpointer, CheckpointStore

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=200_000)
    parser.add_argument("--steps", type=int, default=3, help="observations per entity first")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stores", action="store_true",
                        help="compare save/restore on local disk and on S3 (moto)")
    parser.add_argument("--s3-endpoint", default="", help="an S3 endpoint instead of moto")
    parser.add_argument("--only", choices=("local", "s3"), default="",
                        help="with --stores: one store (moto holds every object in memory: "
                             "about 5.6 times the file at its peak)")
    args = parser.parse_args()

    n = args.entities
    config = config_mod.load(None, env={}).replace("engine", max_entities=n).replace(
        "meta", enabled=False)
    engine = Engine(config)
    names = [f"entity-{i}" for i in range(n)]
    partitions = np.arange(n) % 4
    rng = np.random.default_rng(0)
    step = 0

    def round_trip() -> float:
        """One observation for every entity; → seconds."""
        nonlocal step
        started = time.perf_counter()
        engine.process(names, np.full(n, step * STEP, dtype=np.int64),
                       rng.normal(10, 1, n), partitions)
        step += 1
        return time.perf_counter() - started

    for _ in range(args.steps):
        round_trip()
    if args.stores:
        compare_stores(config, engine, args.repeat, args.s3_endpoint, args.only)
        return
    with tempfile.TemporaryDirectory() as directory:
        store = CheckpointStore(directory, member="bench", keep=2)
        rarely = CheckpointConfig(every_s=3600, every_records=10**9)
        checkpointer = Checkpointer(store, engine, rarely)
        checkpointer.advance({p: 1 for p in range(4)}, 0)
        print(f"{n} entities, {len(engine)} resident")
        for _ in range(args.repeat):
            started = time.perf_counter()
            written = checkpointer.save()
            print(f"sync save: loop blocked {time.perf_counter() - started:.3f} s "
                  f"({written.size / 1e6:.0f} MB)")
        background = getattr(checkpointer, "save_in_background", None)
        if background is None:
            return
        for _ in range(args.repeat):
            idle = round_trip()
            started = time.perf_counter()
            assert background()
            blocked = time.perf_counter() - started
            rounds, busy = 0, 0.0
            while checkpointer.writing:
                busy += round_trip()
                rounds += 1
            written = time.perf_counter() - started
            checkpointer.wait()
            rate = f"{rounds * n / busy:,.0f}" if rounds else "-"
            print(f"background save: loop blocked {blocked:.3f} s, file written after "
                  f"{written:.3f} s; engine meanwhile {rate} obs/s "
                  f"(alone {n / idle:,.0f} obs/s, {rounds} rounds)")


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's standalone S3 server in a subprocess; → its endpoint."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "bench")
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)


def compare_stores(config: object, engine: object, repeat: int, endpoint: str,
                   only: str = "") -> None:
    import s3fs

    from streammeta.config import CheckpointConfig
    from streammeta.online.engine import Engine
    from streammeta.persistence.checkpoint import Checkpointer, CheckpointStore

    rarely = CheckpointConfig(every_s=3600, every_records=10**9)

    def measure(label: str, url: str, options: dict[str, str]) -> None:
        saver = Checkpointer(CheckpointStore(url, "bench", keep=2, options=options), engine,
                             rarely)  # type: ignore[arg-type]
        saver.advance({p: 1 for p in range(4)}, 0)
        for _ in range(repeat):
            written = saver.save()
            saved_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KB → GB
            fresh = Engine(config)  # type: ignore[arg-type]
            loader = Checkpointer(CheckpointStore(url, "other", options=options), fresh,
                                  rarely)
            started = time.perf_counter()
            loader.restore_partitions([0, 1, 2, 3])
            restored = time.perf_counter() - started
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
            print(f"{label}: save {written.seconds:.2f} s ({written.size / 1e6:.0f} MB), "
                  f"restore {restored:.2f} s ({len(fresh.arena)} entities); peak RSS of "
                  f"this process so far: after the save {saved_peak:.2f} GB, after the "
                  f"restore (beside the saving engine) {peak:.2f} GB")
            del fresh, loader

    if only != "s3":
        with tempfile.TemporaryDirectory() as directory:
            measure("local disk", directory, {})
    if only == "local":
        return
    ours = not endpoint
    with contextlib.ExitStack() as stack:
        endpoint = endpoint or stack.enter_context(moto_server())
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        s3fs.S3FileSystem(endpoint_url=endpoint).mkdir(bucket)
        measure(f"s3 ({endpoint})", f"s3://{bucket}/checkpoints", {"endpoint_url": endpoint})
    if ours:  # moto's server has exited: its peak is the children's
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6
        print(f"peak RSS of moto's server {peak:.2f} GB")


if __name__ == "__main__":
    main()
