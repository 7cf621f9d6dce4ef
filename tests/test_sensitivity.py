"""The mixed-precision search on a synthetic network whose layers each cost a known agreement."""

from __future__ import annotations

import numpy as np
import pytest

from kitsrt.calibration.sensitivity import label_agreement, search_float_nodes

COST = {"stem": 0.0, "a": 0.010, "b": 0.001, "c": 0.030, "d": 0.002, "e": 0.020, "f": 0.0005}


def agreement_of(calls):
    def measure(quantized):
        calls.append(list(quantized))
        return 1.0 - sum(COST[n] for n in quantized)
    return measure


def test_search_keeps_the_fewest_most_sensitive_layers_in_float():
    calls = []
    result = search_float_nodes(list(COST), agreement_of(calls), target=0.99)
    # Everything quantized loses 0.0635; c, e and a (0.06) must go, leaving 0.0035 <= 0.01.
    assert result.float_nodes == ["c", "e", "a"]
    assert result.agreement == pytest.approx(1 - 0.0035)
    assert result.agreement_all_quantized == pytest.approx(1 - 0.0635)
    assert [n for n, _ in result.ranking] == ["c", "e", "a", "d", "b", "f", "stem"]
    assert len(calls) < 1 + len(COST) + len(COST)  # bisection, not one trial per count


def test_search_does_nothing_when_all_quantized_already_meets_the_target():
    calls = []
    result = search_float_nodes(list(COST), agreement_of(calls), target=0.9)
    assert result.float_nodes == [] and result.ranking == [] and len(calls) == 1


def test_search_may_keep_everything_in_float_when_the_target_is_unreachable():
    result = search_float_nodes(["c", "e"], lambda nodes: 0.5 if nodes else 1.0, target=0.99)
    assert result.float_nodes == ["c", "e"] and result.agreement == 1.0


def test_label_agreement_is_the_worst_foreground_class_dice():
    reference = np.array([0, 1, 1, 1, 2, 2, 0, 0])
    labels = np.array([0, 1, 1, 0, 2, 0, 0, 2])
    # kidney: 2*2/(3+2) = 0.8; tumor: 2*1/(2+2) = 0.5
    assert label_agreement([reference], [labels], [1, 2]) == pytest.approx(0.5)
    assert label_agreement([reference, reference], [labels, reference], [1]) == pytest.approx(2 * 5 / (6 + 5))
    assert label_agreement([reference], [reference], [1, 2, 3]) == 1.0  # class 3 absent from both
