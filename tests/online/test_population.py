from __future__ import annotations

import math

import torch

from streammeta.online.hedge import weights
from streammeta.online.population import MATURE, YOUNG, Population


def errors(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows)[:, None, :]  # (B, S=1, E)


def test_a_young_entity_starts_from_the_young_entities_record() -> None:
    """Young entities are served best by expert 1, mature ones by expert 0: each age
    starts from its own record, not from the mix."""
    population = Population(horizons=1, experts=2, events=30.0)
    valid = torch.ones(4, 1, dtype=torch.bool)
    young = torch.tensor([[True], [True], [False], [False]])
    population.update(errors([2.0, 0.5], [2.0, 0.5], [0.5, 2.0], [0.5, 2.0]), valid, young)
    population.commit()
    prior = population.prior(torch.tensor([True, False]))  # (2, S, E)
    assert float(prior[0, 0, 1]) == 0.0 and float(prior[0, 0, 0]) > 10  # young: expert 1
    assert float(prior[1, 0, 0]) == 0.0 and float(prior[1, 0, 1]) > 10  # mature: expert 0


def test_a_record_with_nothing_at_a_horizon_borrows_the_other_then_is_even() -> None:
    population = Population(horizons=2, experts=2, events=30.0)
    assert not population.prior(torch.tensor([True])).any()  # nothing seen: even weights
    valid = torch.tensor([[True, False]])
    population.update(torch.tensor([[[0.0, 1.0], [9.0, 9.0]]]), valid, torch.tensor([[False]]))
    population.commit()
    prior = population.prior(torch.tensor([True, False]))
    assert torch.equal(prior[0], prior[1])  # young: nothing yet, the mature record stands in
    assert float(prior[0, 0, 1]) == 30.0 and not prior[:, 1].any()  # horizon 2: even


def test_a_missing_expert_forecast_counts_as_the_mean_of_the_others() -> None:
    population = Population(horizons=1, experts=3, events=1.0)
    population.update(errors([1.0, 3.0, float("nan")]), torch.ones(1, 1, dtype=torch.bool),
                      torch.ones(1, 1, dtype=torch.bool))
    population.commit()
    assert torch.allclose(population.mean[YOUNG, 0], torch.tensor([1.0, 3.0, 2.0]))
    assert population.count[MATURE].sum() == 0


def test_a_checkpointed_record_comes_back_and_an_older_layout_stands_for_both_ages() -> None:
    population = Population(horizons=1, experts=2, events=30.0)
    population.update(errors([0.5, 2.0]), torch.ones(1, 1, dtype=torch.bool),
                      torch.zeros(1, 1, dtype=torch.bool))
    population.commit()
    again = Population(horizons=1, experts=2, events=30.0)
    assert again.restore(population.export())
    assert torch.equal(again.mean, population.mean) and again.seen == 1
    older = Population(horizons=1, experts=3, events=30.0)  # a record before expert 3
    assert older.restore({"mean": torch.tensor([[0.5, 2.0]]), "seen": 10.0})
    assert torch.allclose(older.mean[YOUNG, 0], torch.tensor([0.5, 2.0, 1.25]))
    assert not older.restore({"mean": torch.zeros(4, 2), "seen": 1.0})  # other horizons


def test_the_record_fades_as_an_entity_resolves_forecasts_of_its_own() -> None:
    """The population's record (expert 1 worse by 1 per forecast) counts fully for an
    entity that has resolved nothing yet and is discounted like the entity's own older
    errors after that: a mature entity whose own record favours expert 1 is served it."""
    population = Population(horizons=1, experts=2, events=30.0)
    population.update(errors([0.2, 1.2]), torch.ones(1, 1, dtype=torch.bool),
                      torch.zeros(1, 1, dtype=torch.bool))
    population.commit()
    mature = torch.zeros(4, dtype=torch.bool)
    resolved = torch.tensor([[-5], [0], [48], [400]])
    prior = population.prior(mature, resolved, fade=50.0)
    assert torch.allclose(prior[:2, 0, 1], torch.tensor([30.0, 30.0]))
    assert abs(float(prior[2, 0, 1]) - 30.0 * math.exp(-48 / 50)) < 1e-3
    assert float(prior[3, 0, 1]) < 0.02 and not prior[:, 0, 0].any()
    assert torch.equal(population.prior(mature), population.prior(mature, resolved, 0.0))
    own = torch.tensor([[[15.0, 5.0]]]).expand(4, 1, 2)  # its own: expert 1 better by 0.2
    w = weights(own, 0.5, prior)
    assert float(w[1, 0, 1]) < 0.01 and float(w[3, 0, 1]) > 0.99


def test_the_record_does_not_depend_on_how_its_errors_were_split_into_commits() -> None:
    """The daemon commits the record once per poll: one forecast at a time at a low
    rate, thousands in a busy batch. The first commit's mean was taken whole, and each
    later forecast moved it by the smoothing (0.001): committed one at a time, the first
    of 50 forecasts outweighed the other 49 together (M1 monthly, one observation per
    poll: MASE 1.345 against 1.255 in batches of 5000)."""
    rng = torch.Generator().manual_seed(0)
    errs = torch.rand(50, 1, 2, generator=rng) * 4  # (B, S=1, E=2)
    valid, young = torch.ones(50, 1, dtype=torch.bool), torch.ones(50, 1, dtype=torch.bool)
    at_once, one_by_one = Population(1, 2, 30.0), Population(1, 2, 30.0)
    at_once.update(errs, valid, young)
    at_once.commit()
    for k in range(50):
        one_by_one.update(errs[k:k + 1], valid[k:k + 1], young[k:k + 1])
        one_by_one.commit()
    assert torch.allclose(at_once.mean[YOUNG], errs.mean(dim=0))
    # one by one, later forecasts weigh a little more (0.999 per forecast): within 1%
    assert torch.allclose(one_by_one.mean[YOUNG], at_once.mean[YOUNG], rtol=0.01)
    assert torch.equal(one_by_one.count, at_once.count)
