from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from streammeta import config as config_mod
from streammeta.cli import main
from streammeta.evaluation import baselines, peers
from streammeta.evaluation import evaluate as E
from streammeta.evaluation import protocols as P
from streammeta.evaluation import scores as M
from streammeta.io import datasets

HOUR = datasets.HOUR_MS
LEVELS = np.array([0.1, 0.5, 0.9])
pytestmark = pytest.mark.skipif(not peers.available(), reason="statsforecast not installed")


def _seasonal(n: int, length: int, seed: int = 0, m: int = 12) -> list[datasets.Series]:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return [datasets.Series(f"s{k}", t * HOUR, 50 + 0.1 * t + 5 * np.sin(2 * math.pi * t / m)
                            + rng.normal(0, 0.3, length)) for k in range(n)]


def test_peers_are_run_and_scored_beside_the_baselines() -> None:
    series = _seasonal(4, 60)
    task = P.final_origin_task(series, None, 6, 12, HOUR)
    config = config_mod.load(None, env={}).replace("meta", enabled=False)
    notes: list[str] = []
    result = E.evaluate(task, config, ("seasonal-naive", "naive2", *E.PEER_METHODS),
                        progress=False, notes=notes)
    rows = {r["method"]: r for r in result.results}
    assert set(rows) == {"seasonal-naive", "naive2", "auto-ets", "auto-arima", "auto-theta"}
    for name in E.PEER_METHODS:
        assert np.isfinite(rows[name]["mase"]) and 0 <= rows[name]["coverage"] <= 1
        assert rows[name]["pinball"] > 0 and rows[name]["ranked"] == 5
        assert f"final-origin H=6 {name}: 0 of 4 forecasts by seasonal naive" in " ".join(notes)
    # A trend plus a clean season: the fitted models beat repeating last year.
    assert rows["auto-ets"]["mase"] < rows["seasonal-naive"]["mase"]
    assert "pinball" not in rows["naive2"]  # no quantiles: no score, said in a note
    assert any("no quantiles" in n and "naive2" in n for n in notes)
    ranks = sorted(r["rank_mase"] for r in rows.values())
    assert ranks[0] == 1 and ranks[-1] <= 5


def test_histories_too_short_fall_back_to_seasonal_naive_and_are_counted() -> None:
    noise = np.random.default_rng(3).normal(0, 0.2, 40)
    histories = [np.array([5.0, 6.0]), np.arange(40, dtype=np.float64) + noise]
    out = peers.forecast(["auto-ets"], histories, 3, 1, LEVELS)["auto-ets"]
    assert out.fallbacks == 1
    assert out.point[0].tolist() == [6.0, 6.0, 6.0]  # seasonal naive (m = 1): the last value
    assert out.point[1] == pytest.approx([40.0, 41.0, 42.0], abs=0.5)  # a fitted trend
    assert (out.quantiles[1, 0] < out.point[1]).all()
    assert (out.quantiles[1, 2] > out.point[1]).all()


def test_rolling_peers_refit_at_a_cadence_and_share_a_slice_with_every_method() -> None:
    series = _seasonal(3, 200, m=12)
    task = P.rolling_task(series, 6, 12, HOUR, warmup=36)
    plan = peers.PeerPlan(origins=4)
    rows, cadence = plan.rows(task)
    assert cadence % 12 == 0 and cadence > 0
    assert set(np.bincount(task.ent[rows]).tolist()) == {len(range(35, 200 - 6, cadence))}
    notes: list[str] = []
    config = config_mod.load(None, env={})
    result = E.evaluate(task, config, ("seasonal-naive", "auto-theta"), progress=False,
                        notes=notes, plan=plan)
    slices = {(r["method"], r["slice"]) for r in result.results}
    assert ("auto-theta", "peers") in slices and ("auto-theta", "all") not in slices
    assert ("seasonal-naive", "peers") in slices and ("seasonal-naive", "all") in slices
    assert any(f"every {cadence} steps" in n for n in notes)


def test_short_m1_shaped_series_are_scored_not_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    train = ["V1,V2,V3,V4,V5,V6,V7,V8,V9,V10,V11,V12"]
    test = ["V1,V2,V3,V4,V5,V6"]
    for k in range(6):  # 9 to 11 yearly values, as M1's shortest
        n = 9 + k % 3
        v = 100 + np.cumsum(rng.uniform(1, 5, n + 6))
        train.append(f"Y{k}," + ",".join(f"{x:.2f}" for x in v[:n]) + "," * (11 - n))
        test.append(f"Y{k}," + ",".join(f"{x:.2f}" for x in v[n:]))
    (tmp_path / "Yearly-train.csv").write_text("\n".join(train) + "\n")
    (tmp_path / "Yearly-test.csv").write_text("\n".join(test) + "\n")
    out = tmp_path / "r.json"
    assert main(["evaluate", "--data", str(tmp_path / "Yearly"), "--format", "m4",
                 "--protocol", "final-origin", "--methods", "streammeta", "seasonal-naive",
                 "auto-ets", "--json", str(out), "-q"]) == 0
    results = json.loads(out.read_text())["results"]
    assert {r["method"] for r in results} == {"streammeta", "seasonal-naive", "auto-ets"}
    for r in results:  # Yearly: H = 6, m = 1 from the file's name; every series scored
        assert r["horizon"] == 6 and np.isfinite(r["mase"]) and np.isfinite(r["pinball"])


def test_seasonal_naive_quantiles_by_hand() -> None:
    # m = 2; residuals y_i − y_{i−2} = 2, 2, −2 → σ = 2; at h = 1, 2: one season ahead
    # (×1), at h = 3: two (×√2); 0.9-quantile = point + 1.2816 σ.
    y = np.array([1.0, 2.0, 3.0, 4.0, 1.0])
    q = baselines.seasonal_naive_quantiles(y, np.array([4]), 3, 2, LEVELS)[0]
    assert q[1].tolist() == [4.0, 1.0, 4.0]
    z = 1.2815515655446004
    assert q[2] - q[1] == pytest.approx([2 * z, 2 * z, 2 * z * math.sqrt(2)])


def test_pinball_and_coverage_by_hand() -> None:
    truth = np.array([[10.0, 20.0]])
    quant = np.array([[[8.0, 21.0], [9.0, 22.0], [12.0, 23.0]]])  # (1, Q=3, H=2)
    # h=1: u = 2, 1, −2 → 2·(0.1·2), 2·(0.5·1), 2·(0.1·2) = 0.4, 1.0, 0.4
    # h=2: u = −1, −2, −3 → 2·(0.9·1), 2·(0.5·2), 2·(0.1·3) = 1.8, 2.0, 0.6
    pinball, coverage = M.quantile_scores(quant, LEVELS, truth, np.array([2.0]))
    assert pinball[0] == pytest.approx((0.4 + 1.0 + 0.4 + 1.8 + 2.0 + 0.6) / 6 / 2)
    assert coverage[0] == 0.5  # 10 in [8, 12], 20 below 21
    nan, _ = M.quantile_scores(quant, LEVELS, truth, np.array([0.0]))
    assert np.isnan(nan[0])  # no scale: no scaled loss
