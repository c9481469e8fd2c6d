from __future__ import annotations

import time

import numpy as np
import orjson
import pytest
import torch
from support import STEP, histories, layout_of, related_family
from torch import Tensor

from streammeta.config import Config
from streammeta.io.codec import Record, encode_observation
from streammeta.io.streams import MemorySink, MemorySource
from streammeta.meta import outer
from streammeta.meta.layout import TaskLayout
from streammeta.meta.learner import MetaLearner
from streammeta.meta.memory import store_for
from streammeta.meta.tasks import TaskBuffer
from streammeta.online import model
from streammeta.online.arena import window
from streammeta.online.engine import Engine
from streammeta.serve.daemon import Daemon


@pytest.fixture
def cfg(meta_cfg: Config) -> Config:
    return meta_cfg.replace("meta", every_observations=2000, every_s=3600)


def test_query_targets_never_reach_the_adaptation(cfg: Config) -> None:
    layout = layout_of(cfg)
    clean = histories(cfg, 16)
    xs, ys, _, _ = layout.split(clean)
    poisoned = clean.clone()
    first_query_target = (layout.support - 1) * layout.stride + layout.horizon + layout.window
    poisoned[:, first_query_target:] = 1e6
    ps, pys, _, pyq = layout.split(poisoned)
    assert torch.equal(xs, ps) and torch.equal(ys, pys)  # support untouched
    assert (pyq >= 1e6).all()  # every query target was poisoned
    learner = MetaLearner(model.init_params(Engine(cfg).shape), layout, cfg.meta,
                          cfg.adaptation, cfg.series.quantiles)
    a = learner.batch(clean).mature
    b = learner.batch(poisoned).mature
    phi = learner.params["phi0"]
    for task in range(4):
        torch.testing.assert_close(learner._adapt(learner.params, phi, a[0][task], a[1][task]),
                                   learner._adapt(learner.params, phi, b[0][task], b[1][task]))


def test_young_tasks_are_a_new_entitys_first_forecasts(cfg: Config) -> None:
    """A young task's query windows are what the engine forecasts from for an entity
    that has seen ``young`` values (its window completed with its first season), and
    their targets are the values that follow."""
    config = cfg.replace("model", window=72, warm_after=36)
    warm_at = Engine(config).warm_at
    assert warm_at == 36
    m = config.meta
    layout = TaskLayout(72, config.series.horizon, m.support_windows, m.query_windows,
                        m.window_stride, config.series.season, young=warm_at)
    h = histories(config, 8)
    xq, yq, _ = layout.young_split(h)
    ring = torch.cat([h, h], dim=1)  # the arena's doubled ring, long enough not to wrap
    assert xq.shape[1] == layout.young_steps + 1
    for k in range(layout.young_steps + 1):
        made_at = warm_at + k  # values seen at the k-th forecast
        first = torch.full((len(h),), made_at - 72)
        assert torch.equal(xq[:, k], window(ring, first, 72, config.series.season))
        assert torch.equal(yq[:, k], h[:, made_at: made_at + config.series.horizon])


@pytest.mark.parametrize("memory", [False, True])
def test_young_tasks_follow_the_engine_through_an_entitys_first_forecasts(
        cfg: Config, memory: bool) -> None:
    """The context a young task forecasts with at each of an entity's first H steps
    after it turns warm — φ₀ (plus the memory's initialisation), then the online steps
    on partly arrived targets, shrunk back after each — is the engine's own, and so
    are the forecasts: meta-learning trains on what the daemon serves. The task and
    where its φ started come from the task buffer, as in the outer loop. (The guard,
    which would blend in the initial θ's forecasts, is off: the version's own are compared.)"""
    config = (cfg.replace("model", window=72, warm_after=36).replace("drift", enabled=False)
              .replace("meta", guard=False).replace("experts", enabled=False)
              .replace("memory", enabled=memory, min_similarity=-1.0, temperature=1.0))
    memory_store = store_for(config)
    engine = Engine(config, memory=memory_store)
    params = {k: v.clone() for k, v in engine.serving()[0].items()}
    params["alpha"] = torch.full_like(params["alpha"], 0.3)  # adaptation that shows
    engine.swap(params, 1)
    C = config.model.context_dim
    if memory:  # neighbours for every new entity, each a different blend
        assert memory_store is not None
        gen = torch.Generator().manual_seed(5)
        keys = torch.randn(4, config.series.season + 1, generator=gen)
        memory_store.insert([f"old{i}" for i in range(4)], keys / keys.norm(dim=1,
                             keepdim=True), 0.5 * torch.randn(4, C, generator=gen))
    m = config.meta
    layout = TaskLayout(72, config.series.horizon, m.support_windows, m.query_windows,
                        m.window_stride, config.series.season, young=engine.warm_at)
    buffer = TaskBuffer(8, layout.young_length, config.engine.max_entities, C)
    engine.attach_tasks(buffer)
    learner = MetaLearner(params, layout, m, config.adaptation, config.series.quantiles)
    values = related_family(3, layout.young_length, seed=4)
    names = [f"e{i}" for i in range(3)]
    served_phi, served_point = [], []
    for t in range(layout.young_length):
        result = engine.process(names, np.full(3, t * STEP, dtype=np.int64), values[:, t])
        if engine.warm_at <= t + 1 <= engine.warm_at + layout.young_steps:
            # forecasts made having seen t + 1 values
            served_phi.append(engine.arena.phi[torch.as_tensor(result.forecasts.slots)])
            served_point.append(torch.as_tensor(result.forecasts.point))
    rows = buffer.row_of_slot[torch.tensor([engine.arena.index[e] for e in names])]
    history = buffer.histories(rows, layout.young_length, oldest=True)
    anchors = buffer.anchors(rows)
    assert bool((anchors.norm(dim=1) > 0.01).all()) == memory
    xq, yq, _, start, mask = learner.batch(history[:0], history, anchors).young
    raw_xq, _, _ = layout.young_split(history)
    for e in range(3):
        phis = learner._young_contexts(learner.params, xq[e, 0], yq[e, 0], start[e], mask)
        torch.testing.assert_close(phis, torch.stack([p[e] for p in served_phi]))
        _, mean, scale = model.normalise(raw_xq[e])
        point, _ = model.point_and_spread(learner.params, xq[e], phis)
        point = model.from_model_units(point * scale + mean, engine.shape.transform)
        torch.testing.assert_close(point, torch.stack([p[e] for p in served_point]),
                                   rtol=1e-4, atol=1e-4)


def test_young_tasks_teach_the_first_forecasts(cfg: Config) -> None:
    config = cfg.replace("model", window=72, warm_after=36)
    engine = Engine(config)
    m = config.meta
    layout = TaskLayout(72, config.series.horizon, m.support_windows, m.query_windows,
                        m.window_stride, config.series.season, young=engine.warm_at)
    learner = MetaLearner(engine.serving()[0], layout, m, config.adaptation,
                          config.series.quantiles)
    assert learner.young_count(64) == 32  # meta.young_share = 0.5
    train, held = histories(config, 256, seed=1), histories(config, 64, seed=2)
    batch = learner.batch(train[:3], train[3:8])
    assert len(batch.mature[0]) == 3 and len(batch.young[0]) == 5
    none = train[:0]
    before = learner.evaluate(engine.serving()[0], none, held)
    for _ in range(40):
        learner.step(none, train[torch.randint(256, (64,))])
    assert learner.evaluate(learner.snapshot(), none, held) < 0.9 * before


@pytest.mark.parametrize("algorithm", ["fomaml", "maml", "reptile"])
def test_every_algorithm_lowers_held_out_meta_loss(cfg: Config, algorithm: str) -> None:
    config = cfg.replace("meta", algorithm=algorithm)
    start = Engine(config).serving()[0]
    learner = MetaLearner(start, layout_of(config), config.meta, config.adaptation,
                          config.series.quantiles)
    train, held = histories(config, 256, seed=1), histories(config, 64, seed=2)
    before = learner.evaluate(start, held)
    for _ in range(40):
        learner.step(train[torch.randint(256, (64,))])
    assert learner.evaluate(learner.snapshot(), held) < 0.9 * before


def test_pull_moves_theta_back_towards_where_it_started(cfg: Config) -> None:
    """``meta.pull`` = p: each meta-step ends p of the way back towards the starting θ,
    so one step from the start lands at start + (1 - p) · the unpulled update."""
    start = Engine(cfg).serving()[0]
    train = histories(cfg, 64, seed=1)
    moved = {}
    for pull in (0.0, 0.25):
        config = cfg.replace("meta", pull=pull)
        learner = MetaLearner(start, layout_of(config), config.meta, config.adaptation,
                              config.series.quantiles)
        learner.step(train)
        moved[pull] = learner.snapshot()
    for name, value in start.items():
        torch.testing.assert_close(moved[0.25][name] - value,
                                   0.75 * (moved[0.0][name] - value), rtol=1e-5, atol=1e-7)
    assert any(not torch.equal(moved[0.0][k], start[k]) for k in start)


def test_the_candidate_is_a_moving_average_of_theta(cfg: Config) -> None:
    """``meta.average`` = a: after one step from the start the candidate is
    start + (1 - a) · the step, and loading a served version restarts the average."""
    start = Engine(cfg).serving()[0]
    train = histories(cfg, 64, seed=1)
    learners = {}
    for average in (0.0, 0.75):
        config = cfg.replace("meta", average=average)
        learners[average] = MetaLearner(start, layout_of(config), config.meta,
                                        config.adaptation, config.series.quantiles)
        learners[average].step(train)
    stepped, averaged = learners[0.0].snapshot(), learners[0.75].snapshot()
    for name, value in start.items():
        torch.testing.assert_close(averaged[name] - value, 0.25 * (stepped[name] - value),
                                   rtol=1e-5, atol=1e-7)
    # The learner itself took the whole step; only the candidate is averaged.
    torch.testing.assert_close(learners[0.75].params, stepped)
    learners[0.75].load(stepped)
    torch.testing.assert_close(learners[0.75].snapshot(), stepped)


def test_a_worse_candidate_is_not_promoted(cfg: Config) -> None:
    engine = Engine(cfg)
    published: list[int] = []
    loop = outer.attach(cfg, engine, lambda params, version: published.append(version))
    values = related_family(64, layout_of(cfg).length + 20, seed=3)
    for t in range(values.shape[1]):
        engine.process([f"e{i}" for i in range(64)], np.full(64, t * STEP), values[:, t])
    good = loop.run_once()
    assert good is not None and good.promoted and published == [good.version]
    sabotage = loop.learner.snapshot
    loop.learner.snapshot = lambda: {  # type: ignore[method-assign]
        **sabotage(), "w_point": sabotage()["w_point"] + 5.0}
    bad = loop.run_once()
    assert bad is not None and not bad.promoted and bad.candidate_loss > bad.serving_loss
    assert published == [good.version] and bad.version == good.version + 1


def test_a_rejected_candidate_is_trained_on_until_another_version_is_served(
        cfg: Config) -> None:
    """A rejection keeps the learner's progress: the next trigger starts from the
    rejected candidate, not from the serving version; a version served meanwhile (a
    promotion, or one swapped in) restarts it from that version."""
    engine = Engine(cfg)
    loop = outer.attach(cfg, engine, engine.swap)
    values = related_family(64, layout_of(cfg).length + 20, seed=3)
    for t in range(values.shape[1]):
        engine.process([f"e{i}" for i in range(64)], np.full(64, t * STEP), values[:, t])
    judged = iter([2.0, 1.0] * 3)  # every candidate's held-out loss is worse
    loop.learner.evaluate = lambda *args: next(judged)  # type: ignore[method-assign]
    starts: list[model.Params] = []
    step = loop.learner.step

    def recorded(*args: Tensor) -> float:
        starts.append(loop.learner.snapshot())
        return step(*args)

    loop.learner.step = recorded  # type: ignore[method-assign]
    first = loop.run_once()
    assert first is not None and not first.promoted and engine.version == 0
    rejected = loop.learner.snapshot()
    assert not torch.equal(rejected["w1"], engine.serving()[0]["w1"])
    starts.clear()
    second = loop.run_once()
    assert second is not None and not second.promoted
    assert all(torch.equal(starts[0][k], rejected[k]) for k in rejected)
    engine.swap(model.init_params(engine.shape, seed=5), 9)
    starts.clear()
    loop.run_once()
    assert all(torch.equal(starts[0][k], engine.serving()[0][k]) for k in engine.serving()[0])


def test_new_entities_alone_start_the_loop_on_young_tasks(cfg: Config) -> None:
    """Before any entity has a whole task of history, the loop learns from the new
    entities' first forecasts alone, so that the earliest arrivals teach θ too."""
    def fed(config: Config) -> outer.OuterLoop:
        engine = Engine(config)
        loop = outer.attach(config, engine, engine.swap)
        values = related_family(64, loop.learner.layout.young_length + 4, seed=3)
        assert values.shape[1] < loop.learner.layout.length  # no whole-window task yet
        for t in range(values.shape[1]):
            engine.process([f"e{i}" for i in range(64)], np.full(64, t * STEP), values[:, t])
        return loop

    loop = fed(cfg)
    shapes: list[tuple[int, int]] = []
    step = loop.learner.step

    def recorded(histories: Tensor, young: Tensor, anchors: Tensor) -> float:
        shapes.append((len(histories), len(young)))
        return step(histories, young, anchors)

    loop.learner.step = recorded  # type: ignore[method-assign]
    assert loop.ready()
    result = loop.run_once()
    assert result is not None and len(shapes) == cfg.meta.steps
    assert all(mature == 0 and young > 0 for mature, young in shapes)
    assert result.candidate_loss < result.serving_loss and result.promoted
    # Without young tasks there is nothing to learn from yet.
    idle = fed(cfg.replace("meta", young_share=0.0))
    assert len(idle.buffer.born_rows(idle.learner.layout.young_length)) == 64
    assert not idle.ready() and idle.run_once() is None


def test_a_few_long_lived_entities_are_split_in_time(cfg: Config) -> None:
    """Too few entities to hold any out (here 3, the loop needs 8 + 2): every entity
    trains on stretches that end before the query targets of its newest task, and that
    task judges the candidate, so a small deployment meta-learns too."""
    cfg = cfg.replace("series", transform="none")  # the buffer holds the values as sent
    engine = Engine(cfg)
    loop = outer.attach(cfg, engine, engine.swap)
    layout = loop.learner.layout
    values = related_family(3, layout.length + 4 * cfg.series.season, seed=3).astype(np.float32)
    for t in range(values.shape[1]):
        engine.process(["a", "b", "c"], np.full(3, t * STEP), values[:, t])
    trained: list[Tensor] = []
    judged: list[Tensor] = []
    step, evaluate = loop.learner.step, loop.learner.evaluate

    def recorded_step(histories: Tensor, young: Tensor, anchors: Tensor) -> float:
        trained.append(histories)
        assert len(young) == 0  # a task at a random point of a long life is not young
        return step(histories, young, anchors)

    def recorded_evaluate(params: model.Params, histories: Tensor, *rest: Tensor) -> float:
        judged.append(histories)
        return evaluate(params, histories, *rest)

    loop.learner.step = recorded_step  # type: ignore[method-assign]
    loop.learner.evaluate = recorded_evaluate  # type: ignore[method-assign]
    result = loop.run_once()
    assert result is not None and len(trained) == cfg.meta.steps
    assert result.candidate_loss < result.serving_loss and result.promoted
    assert engine.version == result.version
    # Judged on each entity's newest task; no training stretch holds its query targets.
    newest = sorted(values[:, -layout.length:].tolist())
    assert judged and all(sorted(h.tolist()) == newest for h in judged)
    targets = set(values[:, -layout.query_span:].ravel().tolist())
    seen = set(torch.cat(trained).ravel().tolist())
    assert not seen & targets and len(seen) > 0.9 * (values.size - len(targets))
    assert seen & set(values[:, -layout.query_span - 1].tolist())  # up to just before them


def test_by_default_the_loop_runs_after_fifty_values_per_entity(cfg: Config) -> None:
    """meta.every_observations = 0 (the default): the count trigger scales with the
    entities the task buffer holds. At the old fixed 200,000 a replay of 7 sensors
    (ETTh2, 100,000 values) or 152 monthly series never ran the loop."""
    assert Config().meta.every_observations == 0
    cfg = cfg.replace("meta", every_observations=0)
    engine = Engine(cfg)
    loop = outer.attach(cfg, engine, engine.swap)
    names = [f"e{i}" for i in range(7)]
    for t in range(50):  # 7 entities: every 350 observations (LEAST)
        assert not loop.due()
        engine.process(names, np.full(7, t * STEP), np.ones(7, dtype=np.float32))
    assert loop.period() == 350 and loop.due()
    loop.run_if_due()  # too short for a task yet: it tries, and the count starts again
    assert not loop.due()
    assert outer.period(0, 100) == 5000 and outer.period(0, 8192) == outer.MOST
    assert outer.period(1234, 100) == 1234  # a set count is kept


def test_the_loop_thread_keeps_to_one_torch_thread(cfg: Config) -> None:
    """A second OpenMP team in the process (the loop thread's, idle between runs) made
    every engine batch 2.4x slower: the loop's own torch work runs on one thread, and
    the ingestion thread keeps its own setting."""
    engine = Engine(cfg)
    seen: list[int] = []
    loop = outer.attach(cfg.replace("meta", every_s=0.01), engine, engine.swap,
                        on_result=lambda result: seen.append(torch.get_num_threads()))
    values = related_family(64, layout_of(cfg).length + 20, seed=3)
    for t in range(values.shape[1]):
        engine.process([f"e{i}" for i in range(64)], np.full(64, t * STEP), values[:, t])
    threads = torch.get_num_threads()
    loop.start()
    deadline = time.monotonic() + 120
    while not seen and time.monotonic() < deadline:
        time.sleep(0.05)
    loop.stop()
    assert seen and seen[0] == 1
    assert torch.get_num_threads() == threads


def test_model_version_advances_in_published_forecasts(cfg: Config) -> None:
    values = related_family(40, 260, seed=4)
    records = []
    for t in range(values.shape[1]):
        for e in range(40):
            key, value = encode_observation(f"e{e}", t * STEP, float(values[e, t]))
            records.append(Record("obs", 0, len(records), key, value))
    source, sink = MemorySource(records, batch_size=400), MemorySink()
    engine = Engine(cfg)
    daemon = Daemon(cfg, source, sink, engine=engine)
    loop = outer.attach(cfg, engine, daemon.offer_params)
    original_poll = source.poll
    hold_at = len(records) * 3 // 4

    def poll(timeout_s: float) -> list[Record]:
        if source.exhausted():
            daemon.stop()
        # Hold the last quarter back until the outer loop has promoted a version.
        if source._cursor >= hold_at and not any(r.promoted for r in loop.results):
            time.sleep(0.01)
            return []
        return original_poll(timeout_s)

    source.poll = poll  # type: ignore[method-assign]
    loop.start()
    daemon.run()
    loop.stop()
    versions = [orjson.loads(v)["model_version"] for _, v in sink.forecasts]
    assert versions[0] == 0 and max(versions) >= 1
    assert versions == sorted(versions)  # swapped between batches, never back
