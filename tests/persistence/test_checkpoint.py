from __future__ import annotations

import itertools
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from support import STEP, small_config

from streammeta.config import CheckpointConfig, Config
from streammeta.errors import ParameterFileError
from streammeta.online.arena import GUARD_UNTIL
from streammeta.online.engine import Engine
from streammeta.persistence.checkpoint import Checkpointer, CheckpointStore, Written
from streammeta.persistence.container import read_file

RARELY = CheckpointConfig(every_s=3600, every_records=10**9)


def small_engine(config: Config | None = None) -> Engine:
    return Engine(config or small_config().replace("engine", max_entities=100))


def feed(engine: Engine, steps: range, entities: int = 6) -> None:
    names = [f"e{i}" for i in range(entities)]
    parts = np.array([i % 2 for i in range(entities)])
    rng = np.random.default_rng(steps.start)
    for t in steps:
        engine.process(names, np.full(entities, t * STEP, dtype=np.int64),
                       rng.normal(10, 1, entities), parts)


def test_roundtrip_keeps_tensors_names_and_offsets(tmp_path: Path) -> None:
    engine = small_engine()
    feed(engine, range(30))
    store = CheckpointStore(tmp_path, member="a")
    slots = engine.arena.slots_in([1])
    store.save({"partitions": {1: {"offset": 42, "rows": engine.arena.export(slots)}}})
    found = store.latest_for(1)
    assert found is not None and store.latest_for(0) is None
    rows = found[1]["partitions"][1]["rows"]
    assert rows["names"] == ["e1", "e3", "e5"] and found[1]["partitions"][1]["offset"] == 42
    restored = small_engine()
    new_slots = restored.arena.restore(rows)
    for field in ("ring", "count", "phi", "pending", "last_ts"):
        torch.testing.assert_close(getattr(restored.arena, field)[new_slots],
                                   getattr(engine.arena, field)[slots], equal_nan=True)


def test_restored_state_continues_exactly_like_the_original(tmp_path: Path) -> None:
    original = small_engine()
    feed(original, range(20))
    store = CheckpointStore(tmp_path, member="a")
    store.save({"partitions": {p: {"offset": 0, "rows": original.arena.export(
        original.arena.slots_in([p]))} for p in (0, 1)}})
    copy = small_engine()
    for p in (0, 1):
        found = store.latest_for(p)
        assert found is not None
        copy.arena.restore(found[1]["partitions"][p]["rows"])
    feed(original, range(20, 40))
    feed(copy, range(20, 40))
    for name in (f"e{i}" for i in range(6)):
        a, b = original.arena.index[name], copy.arena.index[name]
        torch.testing.assert_close(original.arena.ring[a], copy.arena.ring[b])
        torch.testing.assert_close(original.arena.phi[a], copy.arena.phi[b])


def test_damaged_newest_file_falls_back_to_the_previous_good_one(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, member="a", keep=5)
    first = store.save({"partitions": {0: {"offset": 1}}})
    second = store.save({"partitions": {0: {"offset": 2}}})
    assert second.path > first.path
    data = bytearray(Path(second.path).read_bytes())
    data[-5] ^= 0xFF  # a flipped bit in the payload
    Path(second.path).write_bytes(bytes(data))
    found = store.latest_for(0)
    assert found is not None and found[1]["partitions"][0]["offset"] == 1
    assert store.corrupt_seen == 1


def test_each_member_keeps_its_last_n_files(tmp_path: Path) -> None:
    a = CheckpointStore(tmp_path, member="a", keep=2)
    b = CheckpointStore(tmp_path, member="b", keep=2)
    for _ in range(4):
        a.save({"partitions": {}})
        b.save({"partitions": {}})
    names = sorted(p.name for p in tmp_path.glob("*.smck"))
    assert len(names) == 4 and len(list(tmp_path.glob("*.json"))) == 4  # and their manifests
    assert sum("-a.smck" in n for n in names) == 2 and sum("-b.smck" in n for n in names) == 2


class GatedStore(CheckpointStore):
    """A store whose writes wait until ``gate`` is set: a slow disk."""

    def __init__(self, directory: Path, member: str) -> None:
        super().__init__(directory, member=member, keep=10)
        self.gate = threading.Event()

    def save(self, payload: dict) -> Written:
        assert self.gate.wait(30)
        return super().save(payload)


def checkpointer(engine: Engine, store: CheckpointStore) -> Checkpointer:
    return Checkpointer(store, engine, RARELY)


def test_a_background_save_writes_the_state_and_positions_of_its_snapshot(
    tmp_path: Path,
) -> None:
    engine = small_engine()
    feed(engine, range(20))
    store = GatedStore(tmp_path, "a")
    saver = checkpointer(engine, store)
    saver.advance({0: 60, 1: 60}, 120)
    expected = {p: engine.arena.export(engine.arena.slots_in([p])) for p in (0, 1)}
    assert saver.save_in_background()
    assert saver.writing and not saver.save_in_background()  # one write in flight at most
    feed(engine, range(20, 30))  # the loop goes on while the file is written
    saver.advance({0: 90, 1: 90}, 60)
    store.gate.set()
    saver.wait()
    [written] = saver.outcomes()
    assert isinstance(written, Written) and written.size == Path(written.path).stat().st_size
    payload = read_file(Path(written.path))  # the SMCKPT01 format, unchanged
    for p in (0, 1):
        assert payload["partitions"][p]["offset"] == 60
        rows = payload["partitions"][p]["rows"]
        assert rows["names"] == expected[p]["names"]
        for field in ("ring", "count", "phi", "last_ts"):
            torch.testing.assert_close(rows[field], expected[p][field])


def test_synchronous_saves_and_restores_wait_for_the_write_in_flight(tmp_path: Path) -> None:
    engine = small_engine()
    feed(engine, range(10))
    store = GatedStore(tmp_path, "a")
    saver = checkpointer(engine, store)
    saver.advance({0: 30, 1: 30}, 60)
    assert saver.save_in_background()
    feed(engine, range(10, 12))
    saver.advance({0: 36, 1: 36}, 12)
    threading.Timer(0.2, store.gate.set).start()
    saver.release([1])  # waits for the background file, then writes a newer one
    assert not saver.writing
    background, = (o for o in saver.outcomes() if isinstance(o, Written))
    found = store.latest_for(1)
    assert found is not None and found[0] > Path(background.path).name
    assert found[1]["partitions"][1]["offset"] == 36
    assert engine.arena.slots_in([1]).numel() == 0 and 1 not in saver.positions

    saver.advance({0: 42}, 6)
    store.gate.clear()
    assert saver.save_in_background()
    threading.Timer(0.2, store.gate.set).start()
    assert saver.restore_partitions([0]) == {0: 42}  # the file still being written


def test_a_failed_background_write_is_reported_not_raised(tmp_path: Path) -> None:
    engine = small_engine()
    feed(engine, range(5))
    store = CheckpointStore(tmp_path / "dir", member="a")
    saver = checkpointer(engine, store)
    saver.advance({0: 15, 1: 15}, 30)
    (tmp_path / "dir").rmdir()  # the directory vanished (an unmounted volume)
    assert saver.save_in_background()
    saver.wait()
    [failure] = saver.outcomes()
    assert isinstance(failure, OSError)


def test_holders_gives_each_partition_its_newest_file(tmp_path: Path) -> None:
    a = CheckpointStore(tmp_path, member="a")
    b = CheckpointStore(tmp_path, member="b")
    a.save({"partitions": {0: {"offset": 1}, 1: {"offset": 1}}})
    b.save({"partitions": {1: {"offset": 2}}})
    found = {p: payload["partitions"][p]["offset"] for p, _, payload in a.holders([0, 1, 2])}
    assert found == {0: 1, 1: 2}


def step(engine: Engine, t: int, parts: tuple[int, ...]) -> None:
    """Step t of 6 entities (entity i in partition i % 2), only those in ``parts``."""
    values = np.random.default_rng(t).normal(10, 1, 6)
    mine = [i for i in range(6) if i % 2 in parts]
    engine.process([f"e{i}" for i in mine], np.full(len(mine), t * STEP, dtype=np.int64),
                   values[mine], np.array([i % 2 for i in mine]))


def test_state_follows_a_partition_to_another_replica_and_back(tmp_path: Path) -> None:
    """A owns both partitions, hands partition 1 to B (revocation), B dies after a
    periodic checkpoint and A takes 1 back: every entity ends as if one replica had
    processed everything once."""
    reference = small_engine()
    for t in range(40):
        step(reference, t, (0, 1))
    store_a, store_b = (CheckpointStore(tmp_path, member=m) for m in ("a", "b"))
    a, b = small_engine(), small_engine()
    saver_a, saver_b = checkpointer(a, store_a), checkpointer(b, store_b)
    for t in range(15):
        step(a, t, (0, 1))
    saver_a.advance({0: 45, 1: 45}, 90)  # offsets count records: 3 per partition and step
    saver_a.release([1])
    assert saver_b.restore_partitions([1]) == {1: 45}
    for t in range(15, 40):  # each replica applies its own partition's records
        step(a, t, (0,))
        step(b, t, (1,))
        if t == 30:
            saver_b.advance({1: 93}, 48)
            assert saver_b.save_in_background()
            saver_b.wait()
    # B dies: what it applied after step 30 is lost with it; A replays it.
    assert saver_a.restore_partitions([1]) == {1: 93}
    for t in range(31, 40):
        step(a, t, (1,))
    assert sorted(a.arena.index) == sorted(reference.arena.index)
    for name, slot in reference.arena.index.items():
        other = a.arena.index[name]
        assert int(a.arena.count[other]) == 40
        torch.testing.assert_close(a.arena.ring[other], reference.arena.ring[slot])
        torch.testing.assert_close(a.arena.phi[other], reference.arena.phi[slot])


def test_state_in_other_units_is_refused(tmp_path: Path) -> None:
    """State and θ learned on asinh-transformed values must not be restored into an
    engine that feeds raw values (and the other way round)."""
    from streammeta.persistence import params as params_io

    asinh = small_engine(small_config().replace("series", transform="asinh"))
    raw = small_engine(small_config().replace("series", transform="none"))
    feed(asinh, range(20))
    saver = checkpointer(asinh, CheckpointStore(tmp_path, member="a"))
    saver.advance({0: 60, 1: 60}, 120)
    saver.save()
    with pytest.raises(ParameterFileError, match=r"series\.transform"):
        checkpointer(raw, CheckpointStore(tmp_path, member="b")).restore_partitions([0])
    path = params_io.save(tmp_path / "p.smp", asinh.serving()[0], 1, asinh.shape)
    with pytest.raises(ParameterFileError, match=r"series\.transform"):
        params_io.load(path, raw.shape)


def test_parameters_of_another_window_are_refused_at_start(tmp_path: Path) -> None:
    """θ of a checkpoint written with another ``model.window`` (or ``context_dim``)
    cannot be served: a restart refuses it naming the tensor, as a parameter file of
    that shape is refused, instead of serving it and failing in the first batch on a
    matrix product (a RuntimeError at every restart)."""
    original = small_engine()
    feed(original, range(20))
    saver = checkpointer(original, CheckpointStore(tmp_path, member="a"))
    saver.advance({0: 60, 1: 60}, 120)
    saver.save()
    for change in ({"window": 24}, {"context_dim": 8}):
        other = small_engine(small_config().replace("model", **change))
        with pytest.raises(ParameterFileError, match=r"ckpt-.*: \w+ has shape .* this "
                           r"configuration needs .*model settings"):
            checkpointer(other, CheckpointStore(tmp_path, member="b")).restore_model()
        assert other.version == 0  # still the configured θ


def test_state_kept_at_another_step_is_refused(tmp_path: Path) -> None:
    """An entity's last timestamp is kept in the frequency's units (ms, or months for a
    calendar one): hourly state restored under ``series.freq = "MS"`` made every record
    "late" (648 months against 104,400,000 ms) for ever, and under "30min" half-hour
    values continued hourly histories. Another step is refused, naming both; the same
    step under another spelling ("h" for step_ms 3,600,000), and files written before
    the step was recorded, restore as before."""
    from streammeta.io.frequency import parse

    hourly = small_engine()
    feed(hourly, range(20))
    saver = Checkpointer(CheckpointStore(tmp_path, member="a"), hourly, RARELY,
                         frequency=parse("", STEP))
    saver.advance({0: 60, 1: 60}, 120)
    saver.save()
    for freq in ("MS", "30min", "D"):
        config = small_config().replace("series", freq=freq)
        other = small_engine(config)
        restorer = Checkpointer(CheckpointStore(tmp_path, member="b"), other, RARELY,
                                frequency=config.series.frequency)
        with pytest.raises(ParameterFileError, match=rf"partition 0's state was kept at "
                           rf"series.freq '3600000ms' .* this configuration has '{freq}'"):
            restorer.restore_partitions([0])
    same = small_config().replace("series", freq="h")
    restorer = Checkpointer(CheckpointStore(tmp_path, member="c"), small_engine(same), RARELY,
                            frequency=same.series.frequency)
    assert restorer.restore_partitions([0, 1]) == {0: 60, 1: 60}
    unrecorded = small_config().replace("series", freq="MS")
    assert checkpointer(small_engine(unrecorded), CheckpointStore(
        tmp_path, member="d")).restore_partitions([0]) == {0: 60}  # the caller's choice


def test_state_and_parameters_of_other_quantile_levels_are_refused(tmp_path: Path) -> None:
    """θ's quantile outputs and each entity's calibration offsets are learned for the
    levels of ``series.quantiles``; as many other levels fit every tensor, so a
    checkpoint of 0.1/0.5/0.9 restored under 0.05/0.5/0.95 served the old intervals
    under the new labels, quietly. Refused at start (θ) and at assignment (state),
    naming both; the same levels, and files written before they were recorded, restore."""
    original = small_engine()
    feed(original, range(20))
    saver = checkpointer(original, CheckpointStore(tmp_path, member="a"))
    saver.advance({0: 60, 1: 60}, 120)
    saver.save()
    levels = original.shape.quantiles
    other = small_config().replace("series", quantiles=[0.05, 0.5, 0.95])
    assert len(levels) == 3 and tuple(levels) != (0.05, 0.5, 0.95)
    restorer = checkpointer(small_engine(other), CheckpointStore(tmp_path, member="b"))
    with pytest.raises(ParameterFileError, match=r"θ was learned for series.quantiles = "
                       r"\[0.1, 0.5, 0.9\], this configuration has \[0.05, 0.5, 0.95\]"):
        restorer.restore_model()
    with pytest.raises(ParameterFileError, match=r"partition 0's state was learned for "
                       r"series.quantiles"):
        restorer.restore_partitions([0])
    same = checkpointer(small_engine(), CheckpointStore(tmp_path, member="c"))
    assert same.restore_model() == 0
    assert same.restore_partitions([0, 1]) == {0: 60, 1: 60}


def test_an_entitys_state_follows_the_partition_its_records_now_come_from(
    tmp_path: Path
) -> None:
    """The input topic's partitions grew (4 to 8): a key's records now come from another
    partition (p or p + 4). Its state was tagged with the partition of its first record
    for good, so once the two partitions had different owners the new one's owner
    started the entity cold (measured on the embedded broker: 50 of 100 entities cold
    with 3 replicas after the grow) while the old one's kept a copy no record reached.
    The state now goes with the partition of the newest record."""
    engine = small_engine()
    feed(engine, range(12))  # e0, e2, e4 from partition 0; e1, e3, e5 from 1
    names = [f"e{i}" for i in range(6)]
    for t in range(12, 15):  # after the grow, e1 and e5 come from partition 5
        engine.process(names, np.full(6, t * STEP, dtype=np.int64), np.full(6, 10.0),
                       np.array([0, 5, 0, 1, 0, 5]))
    saver = checkpointer(engine, CheckpointStore(tmp_path, member="a"))
    saver.advance({0: 45, 1: 27, 5: 6}, 78)
    saver.save()
    new_owner = small_engine()
    restorer = checkpointer(new_owner, CheckpointStore(tmp_path, member="b"))
    assert restorer.restore_partitions([5]) == {5: 6}
    assert sorted(new_owner.arena.index) == ["e1", "e5"]
    assert {int(new_owner.arena.count[s]) for s in new_owner.arena.index.values()} == {15}
    old_owner = small_engine()
    checkpointer(old_owner, CheckpointStore(tmp_path, member="c")).restore_partitions([1])
    assert sorted(old_owner.arena.index) == ["e3"]


def test_state_saved_before_anchors_and_the_guard_existed_restores(tmp_path: Path) -> None:
    """Rows of an older version have no ``anchor``, ``phi_origin`` or ``guard``: they
    restore (checkpoint and spill file alike) as entities whose φ shrinks towards φ₀
    itself and whose guard period is over, and continue exactly."""
    original = small_engine()
    feed(original, range(20))
    saver = checkpointer(original, CheckpointStore(tmp_path, member="a"))
    saver.advance({0: 60, 1: 60}, 120)
    payload = saver.snapshot()
    for state in payload["partitions"].values():
        for field in ("anchor", "phi_origin", "guard"):
            del state["rows"][field]
    CheckpointStore(tmp_path, member="old").save(payload)
    copy = small_engine()
    copy.arena.anchor.fill_(1.0)  # whatever the free slots held before
    assert checkpointer(copy, CheckpointStore(tmp_path, member="b")).restore_partitions(
        [0, 1]) == {0: 60, 1: 60}
    slots = torch.tensor([copy.arena.index[f"e{i}"] for i in range(6)])
    assert bool((copy.arena.anchor[slots] == 0).all())
    torch.testing.assert_close(copy.arena.phi_origin[slots], copy.arena.phi[slots])
    assert bool((copy.arena.guard[slots, GUARD_UNTIL] == 0).all())
    feed(original, range(20, 40))
    feed(copy, range(20, 40))
    for i in range(6):
        torch.testing.assert_close(copy.arena.phi[copy.arena.index[f"e{i}"]],
                                   original.arena.phi[original.arena.index[f"e{i}"]])


def test_state_saved_before_the_theta_experts_restores(tmp_path: Path) -> None:
    """Rows of the version with four experts (no theta forecasts pending, no seasonal
    indices) restore: the new experts start at the mean of the old ones' record (no
    expert's weight moves at once), and forecasting goes on."""
    original = small_engine()
    feed(original, range(30))
    saver = checkpointer(original, CheckpointStore(tmp_path, member="a"))
    saver.advance({0: 60, 1: 60}, 120)
    payload = saver.snapshot()
    for state in payload["partitions"].values():
        rows = state["rows"]
        rows["experts"] = rows["experts"][:, :, :4].clone()
        del rows["pending_experts"], rows["season_indices"]
    CheckpointStore(tmp_path, member="old").save(payload)
    copy = small_engine()
    assert checkpointer(copy, CheckpointStore(tmp_path, member="b")).restore_partitions(
        [0, 1]) == {0: 60, 1: 60}
    slots = torch.tensor([copy.arena.index[f"e{i}"] for i in range(6)])
    record = copy.arena.experts[slots]
    mean = record[:, :, :4].mean(dim=2, keepdim=True)
    torch.testing.assert_close(record[:, :, 4:], mean.expand_as(record[:, :, 4:]))
    assert bool(copy.arena.pending_experts[slots].isnan().all())
    assert bool((copy.arena.season_indices[slots] == 0).all())
    before = torch.tensor([original.arena.index[f"e{i}"] for i in range(6)])
    torch.testing.assert_close(copy.arena.experts[slots, :, :4],
                               original.arena.experts[before, :, :4])
    feed(copy, range(30, 40))


def test_a_restarted_replica_left_unassigned_for_long_still_restores_every_entity(
    tmp_path: Path,
) -> None:
    """A replica restarts and waits for its partitions for longer than keep × every_s:
    the periodic checkpoints it writes meanwhile hold no partition, and must not
    prune away the files of its previous run that hold them."""
    before = small_engine()
    feed(before, range(20))
    always_due = itertools.count().__next__  # a clock a second on at every look
    saver = Checkpointer(CheckpointStore(tmp_path, member="a", keep=2), before,
                         CheckpointConfig(every_s=1, every_records=10**9), always_due)
    saver.advance({0: 60, 1: 60}, 120)
    saver.save()
    saver.save()  # the shutdown checkpoint: two files hold both partitions

    after = small_engine()  # the same member restarted
    restarted = Checkpointer(CheckpointStore(tmp_path, member="a", keep=2), after,
                             CheckpointConfig(every_s=1, every_records=10**9), always_due)
    assert restarted.restore_model() is not None
    for _ in range(5):  # unassigned: every loop iteration finds a checkpoint due
        assert restarted.due() and restarted.save_in_background()
        restarted.wait()
    assert restarted.restore_partitions([0, 1]) == {0: 60, 1: 60}
    assert sorted(after.arena.index) == sorted(before.arena.index)
    for name, slot in before.arena.index.items():
        assert int(after.arena.count[after.arena.index[name]]) == int(before.arena.count[slot])
    files = sorted(tmp_path.glob("*.smck"))
    assert len(files) <= 2 + 1  # still bounded: keep, plus the newest holder of p0 and p1


def test_phi_are_kept_on_their_own_line_and_reset_on_another(tmp_path: Path) -> None:
    """The coherence rule (docs/recovery.md): a partition's φ, adapted under version 3
    of line L, are restored as they were by a replica serving line L, and reset to
    the served φ₀ by one serving another line's θ."""
    a = small_engine()
    params, _ = a.serving()
    a.swap({k: v + 0.01 for k, v in params.items()}, 3)
    feed(a, range(30))
    saver_a = checkpointer(a, CheckpointStore(tmp_path, member="a"))
    saver_a.line = "L"
    saver_a.advance({0: 90, 1: 90}, 180)
    phi = {n: a.arena.phi[s].clone() for n, s in a.arena.index.items()}
    saver_a.release([1])
    assert any(bool((v != a.serving()[0]["phi0"]).any()) for v in phi.values())  # adapted

    for line, kept in (("L", True), ("M", False)):
        b = small_engine()
        b.swap(a.serving()[0], 5)
        saver_b = checkpointer(b, CheckpointStore(tmp_path, member=f"b-{line}"))
        saver_b.line = line
        assert saver_b.restore_partitions([1]) == {1: 90}
        assert len(b.arena.index) == 3
        for name, slot in b.arena.index.items():
            expected = phi[name] if kept else b.serving()[0]["phi0"]
            torch.testing.assert_close(b.arena.phi[slot], expected)


def test_a_checkpoint_records_the_line_of_its_theta(tmp_path: Path) -> None:
    engine = small_engine()
    saver = checkpointer(engine, CheckpointStore(tmp_path, member="m"))
    assert saver.line == "local:m"  # meta.role all: each process its own line
    saver.line = "trainer-1"
    assert saver.snapshot()["model"]["line"] == "trainer-1"


def test_state_saved_with_a_shorter_ring_restores_with_the_newest_values(
        tmp_path: Path) -> None:
    """Rings written by a version that kept fewer values (before the theta experts'
    history) restore into the longer ring at the same absolute indices."""
    original = small_engine()
    feed(original, range(30))
    R = original.arena.ring_len
    saver = checkpointer(original, CheckpointStore(tmp_path, member="a"))
    saver.advance({0: 60, 1: 60}, 120)
    payload = saver.snapshot()
    short = R - 5
    for state in payload["partitions"].values():
        rows = state["rows"]
        ring, count = rows["ring"], rows["count"]
        index = count[:, None] - 1 - torch.arange(short)[None, :]  # the newest, as kept
        old = torch.zeros(len(count), short)
        old.scatter_(1, index % short, torch.gather(ring, 1, index % R))
        rows["ring"] = old
    CheckpointStore(tmp_path, member="old").save(payload)
    copy = small_engine()
    assert checkpointer(copy, CheckpointStore(tmp_path, member="b")).restore_partitions(
        [0, 1]) == {0: 60, 1: 60}
    for i in range(6):
        a, b = original.arena.index[f"e{i}"], copy.arena.index[f"e{i}"]
        newest = [j % R for j in range(30 - short, 30)]
        torch.testing.assert_close(copy.arena.ring[b, newest], original.arena.ring[a, newest])
    feed(copy, range(30, 40))


@pytest.mark.parametrize("hidden", [16, 0])
def test_a_checkpoint_of_another_width_is_served_and_trained_at_its_own(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, hidden: int) -> None:
    """θ in a checkpoint written with another ``model.hidden`` (e.g. before the default
    changed) is restored as it was written, said in the log, and the outer loop learns
    on from it in that shape; a parameter file of that width is refused where the width
    is explicit (16) and adopted where it is automatic (0: 128 without a file)."""
    from support import layout_of, meta_config, related_family

    from streammeta.meta import outer
    from streammeta.persistence import params as params_io

    wide = meta_config().replace("meta", every_observations=2000, every_s=3600)
    original = small_engine(wide)
    feed(original, range(20))
    saver = checkpointer(original, CheckpointStore(tmp_path, member="a"))
    saver.advance({0: 60, 1: 60}, 120)
    saver.save()
    narrow = wide.replace("model", hidden=hidden)
    engine = Engine(narrow)
    assert engine.shape.hidden == (hidden or 128)
    loop = outer.attach(narrow, engine, engine.swap)
    with caplog.at_level("INFO"):
        checkpointer(engine, CheckpointStore(tmp_path, member="b")).restore_model()
    said = ("model.hidden = 32, the configuration 16" if hidden else
            "model.hidden = 32 (automatic: 128 without it)")
    assert said in caplog.text
    assert engine.serving()[0]["w1"].shape == original.serving()[0]["w1"].shape == (24, 32)
    values = related_family(64, layout_of(narrow).length + 20, seed=3)
    for t in range(values.shape[1]):
        result = engine.process([f"e{i}" for i in range(64)], np.full(64, t * STEP),
                                values[:, t])
        assert not result.rejected
    trained = loop.run_once()
    assert trained is not None and trained.promoted
    assert engine.version == trained.version and engine.serving()[0]["w1"].shape == (24, 32)
    path = params_io.save(tmp_path / "p.smp", *original.serving(), original.shape)
    if not hidden:
        params, _ = params_io.initial(narrow.replace("model", init=str(path)))
        assert params["w1"].shape == (24, 32)
        return
    with pytest.raises(ParameterFileError, match=r"w1 has shape \(24, 32\).*\(24, 16\)"):
        params_io.initial(narrow.replace("model", init=str(path)))
