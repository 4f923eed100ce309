"""Held-out calibration of the router's out-of-distribution test, and routing shares."""

import math

import pytest
import torch

from clora.routing.calibration import calibrated_stats, heldout_ratio
from clora.routing.lda import TaskStats, shared_precision, typical_distances
from clora.routing.router import Route, Router, RouterConfig
from clora.routing.shares import routing_shares


def _gaussian_tasks(n: int, d: int = 64, tasks: int = 3, seed: int = 0):
    """``tasks`` Gaussian clouds in ``d`` dimensions, far apart; ``(train, fresh)`` per task."""
    g = torch.Generator().manual_seed(seed)
    centres = 6.0 * torch.randn(tasks, d, generator=g)
    scales = torch.rand(d, generator=g) * 2 + 0.2  # unequal variances: few examples overfit the small ones
    draw = lambda t, k: centres[t] + scales * torch.randn(k, d, generator=g)  # noqa: E731
    return [(draw(t, n), draw(t, 200)) for t in range(tasks)]


def test_heldout_ratio_by_hand_for_two_points_per_fold():
    """Four points on a line, two folds (n // 2): each fold's held-out D^2 computed by hand."""
    x = torch.tensor([[0.0], [1.0], [3.0], [4.0]], dtype=torch.float64)
    # whole: mean 2, scatter 4+1+1+4 = 10, covariance 10 / (4 - 1), no shrinkage: P = 0.3,
    # training mean D^2 = 0.3 * 10 / 4 = 0.75
    # fold 0 = indices 0, 2 (k::2) = points 0 and 3: rest = {1, 4}, mean 2.5, scatter 4.5, cov 4.5, P = 1/4.5;
    # held-out: (0 - 2.5)^2 / 4.5 and (3 - 2.5)^2 / 4.5
    # fold 1 = indices 1, 3 = points 1 and 4: rest = {0, 3}, mean 1.5, scatter 4.5: (1 - 1.5)^2 / 4.5 and (4 - 1.5)^2 / 4.5
    held = ((2.5 ** 2 + 0.5 ** 2) + (0.5 ** 2 + 2.5 ** 2)) / 4.5 / 4
    ratio, spread = heldout_ratio(x, [], shrinkage=0.0)
    assert ratio == pytest.approx(held / 0.75)
    # held-out D^2 sorted: 0.25/4.5, 0.25/4.5, 6.25/4.5, 6.25/4.5; the 95th percentile is 6.25/4.5
    assert spread == pytest.approx((6.25 / 4.5) / held)


def test_few_examples_in_many_dimensions_are_optimistic_and_many_are_not():
    few = _gaussian_tasks(n=30)[0][0]
    many = _gaussian_tasks(n=3000, d=8)[0][0]
    assert heldout_ratio(few, [], 0.1)[0] > 2.0  # 30 points in 64 dimensions: training distances far too small
    assert heldout_ratio(many, [], 0.1)[0] == pytest.approx(1.0, abs=0.02)


def test_a_tiny_task_keeps_the_plain_test():
    assert heldout_ratio(torch.randn(3, 5), [], 0.1) == (1.0, 1.0)


def test_calibrated_statistics_round_trip_and_old_files_read_as_uncalibrated():
    stats = calibrated_stats(_gaussian_tasks(n=30)[0][0], [], 0.1)
    back = TaskStats.from_tensors(stats.to_tensors())
    assert back.heldout == pytest.approx(stats.heldout) and back.heldout > 1
    assert back.spread == pytest.approx(stats.spread) and back.spread >= 1
    old = {k: v for k, v in stats.to_tensors().items() if k not in ("heldout", "spread")}
    assert (TaskStats.from_tensors(old).heldout, TaskStats.from_tensors(old).spread) == (1.0, 1.0)
    precision = shared_precision([stats], 0.1)
    assert typical_distances([stats], precision)[0] == pytest.approx(
        float(torch.trace(precision @ stats.scatter) / stats.count) * stats.heldout)


def _rates(router: Router, data, unseen):
    own = fallback = wrong = total = 0
    for t, (_, fresh) in enumerate(data):
        for route in router.learned(fresh):
            total += 1
            own += route.task == str(t)
            fallback += route.task is None
            wrong += route.task not in (None, str(t))
    unseen_fallback = sum(r.task is None for r in router.learned(unseen)) / unseen.shape[0]
    return own / total, wrong / total, unseen_fallback


def test_fresh_inputs_of_small_tasks_are_routed_and_an_unseen_cloud_falls_back():
    """The user's case in miniature: 30 examples per task in 64 dimensions. Without calibration almost every
    fresh input of a known task falls back; with it almost all are routed, and a fourth cloud still falls back."""
    data = _gaussian_tasks(n=30)
    unseen = _gaussian_tasks(n=1, seed=1)[0][1]  # another centre, same spread
    names = [str(t) for t in range(len(data))]
    plain = [TaskStats.of(train) for train, _ in data]
    calibrated = []
    for train, _ in data:
        calibrated.append(calibrated_stats(train, list(calibrated), 0.1))
    own_plain, _, _ = _rates(Router(names, plain, [None] * 3, RouterConfig()), data, unseen)
    own, wrong, unseen_fallback = _rates(Router(names, calibrated, [None] * 3, RouterConfig()), data, unseen)
    assert own_plain < 0.3
    assert own >= 0.9 and wrong <= 0.02 and unseen_fallback >= 0.95


def test_routing_shares_by_hand():
    routes = [Route("a", 0.9, "learned"), Route("b", 1.0, "trigger"), Route(None, 0.1, "fallback", guess="a"),
              Route("a", 0.8, "learned")]
    shares = routing_shares(routes, ["a", "a", "a", None])
    assert (shares.total, shares.routed, shares.fallback) == (4, 3, 1)
    assert (shares.known, shares.own, shares.misrouted) == (3, 1, 1)
    assert "3 of 4 routed (75.0%)" in shares.line() and "1 to another (33.3%)" in shares.line()
    assert "known" not in routing_shares(routes).line()


def test_router_settings_of_a_library_with_overrides():
    config = RouterConfig.of_library({"threshold": 0.7, "margin": 2.0, "layer": 3}, threshold=None, margin=1.2)
    assert (config.threshold, config.margin, config.fallback) == (0.7, 1.2, "sum")


def test_the_spread_widens_the_out_of_distribution_test():
    """D^2 = 3 against typical 2: outside margin 1 x typical (damped), inside it once spread 2 is known."""
    from clora.routing.lda import posterior_and_confidence

    d2 = torch.tensor([[3.0, 500.0]], dtype=torch.float64)
    typical = torch.tensor([2.0, 2.0], dtype=torch.float64)
    _, plain = posterior_and_confidence(d2, typical, margin=1.0)
    _, wide = posterior_and_confidence(d2, typical, margin=1.0, spread=torch.tensor([2.0, 2.0], dtype=torch.float64))
    assert plain.item() == pytest.approx(math.exp(-4 * 0.5))  # ratio 1.5, posterior 1
    assert wide.item() == pytest.approx(1.0)


def test_calibrating_all_tasks_together_undoes_the_first_tasks_lonely_ratio():
    """A task calibrated alone uses the covariance of its own 30 inputs; once other tasks share the covariance
    its inputs are not that far out any more, and calibrate_all measures it again."""
    from clora.routing.calibration import calibrate_all

    trains = [train for train, _ in _gaussian_tasks(n=30)]
    alone = calibrated_stats(trains[0], [], 0.1).heldout
    together = calibrate_all(trains, 0.1)
    assert together[0].heldout < alone / 2
    assert [s.count for s in together] == [30.0, 30.0, 30.0]
