import pytest

from clora.evaluation.metrics import average_accuracy, backward_transfer, forgetting, forward_transfer, summarize

# Hand-checked example: rows = after task j, columns = task i.
ACC = [[0.90, 0.10, 0.20],
       [0.95, 0.80, 0.30],
       [0.50, 0.70, 0.95]]
BASE = [0.20, 0.25, 0.10]


def test_average_accuracy_is_mean_of_last_row():
    assert average_accuracy(ACC) == pytest.approx((0.50 + 0.70 + 0.95) / 3)


def test_bwt_compares_final_with_just_learnt():
    # ((0.50 - 0.90) + (0.70 - 0.80)) / 2
    assert backward_transfer(ACC) == pytest.approx(-0.25)


def test_forgetting_uses_best_earlier_accuracy():
    # task 0 peaked at 0.95 after task 1 (not at 0.90): (0.45 + 0.10) / 2
    assert forgetting(ACC) == pytest.approx(0.275)


def test_fwt_against_base_model():
    # ((0.10 - 0.25) + (0.30 - 0.10)) / 2
    assert forward_transfer(ACC, BASE) == pytest.approx(0.025)


def test_single_task_has_no_transfer():
    assert backward_transfer([[0.7]]) == 0.0
    assert forgetting([[0.7]]) == 0.0
    assert forward_transfer([[0.7]], [0.3]) == 0.0
    assert average_accuracy([[0.7]]) == pytest.approx(0.7)


def test_no_forgetting_matrix():
    acc = [[0.8, 0.0], [0.8, 0.9]]
    assert backward_transfer(acc) == 0.0
    assert forgetting(acc) == 0.0


def test_summarize_holds_every_metric():
    block = summarize(ACC, BASE)
    assert set(block) == {"accuracy_matrix", "average_accuracy", "bwt", "forgetting", "fwt"}
    assert block["accuracy_matrix"] == ACC


@pytest.mark.parametrize("bad", [[], [[0.1, 0.2]], [[0.1], [0.2, 0.3]]])
def test_non_square_matrix_is_rejected(bad):
    with pytest.raises(ValueError):
        average_accuracy(bad)


def test_fwt_needs_one_base_per_task():
    with pytest.raises(ValueError):
        forward_transfer(ACC, [0.1])


def test_entries_the_metrics_do_not_read_may_be_missing():
    from clora.evaluation.metrics import summarize

    # tasks two steps ahead are not evaluated; the metrics are those of the full matrix
    full = [[0.9, 0.3, 0.2], [0.8, 0.7, 0.4], [0.6, 0.5, 0.9]]
    sparse = [[0.9, 0.3, None], [0.8, 0.7, 0.4], [0.6, 0.5, 0.9]]
    base = [0.25, 0.25, 0.25]
    got, want = summarize(sparse, base), summarize(full, base)
    assert {k: got[k] for k in ("average_accuracy", "bwt", "forgetting", "fwt")} == {
        k: want[k] for k in ("average_accuracy", "bwt", "forgetting", "fwt")}
    assert got["accuracy_matrix"][0][2] is None
    assert summarize([[0.9, None], [0.8, 0.7]], [0.2, 0.2])["fwt"] is None  # a[i-1][i] missing: FWT undefined
