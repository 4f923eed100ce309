"""The inbox: records, its bound, labels, feedback, clustering beside known-task stand-ins, telling words."""

import json
import os

import numpy as np
import pytest
import torch

from clora.errors import DataError
from clora.inbox.clusters import assign, cluster_inbox, saved_cluster, telling_words
from clora.inbox.feedback import Forbidden, take_feedback
from clora.inbox.records import Inbox, Record, inbox_path
from clora.library.layout import LibraryError
from clora.routing.lda import TaskStats, sample_like, whitening


def test_the_inbox_lives_beside_the_library(tmp_path):
    assert inbox_path(tmp_path / "run" / "library") == (tmp_path / "run" / "library.inbox").resolve()
    inbox = Inbox(tmp_path / "lib")
    assert inbox.records() == [] and not inbox.folder.exists()  # reading creates nothing


def test_records_round_trip_and_bad_records_are_refused(tmp_path):
    inbox = Inbox(tmp_path / "lib")
    a = Record("fever and a pill", guess="cooking", confidence=0.31, answer="red")
    b = Record("a nurse", kind="feedback", label="blue")
    inbox.append([a, b])
    got = inbox.records()
    assert [r.to_dict() for r in got] == [a.to_dict(), b.to_dict()] and got[1].answer_label == "blue"
    for bad in (dict(input=""), dict(input="x", kind="other"), dict(input="x", label="  ")):
        with pytest.raises(DataError):
            Record(**bad)
    with (inbox.folder / "records.jsonl").open("a") as fh:
        fh.write('{"input": "cut off')  # a crash mid-line: that line is skipped, the rest kept
    assert len(inbox.records()) == 2


def test_the_inbox_never_grows_past_its_bound(tmp_path):
    inbox = Inbox(tmp_path / "lib", max_bytes=4096)
    sizes = []
    for i in range(400):
        inbox.append([Record(f"input number {i} " + "x" * (i % 50))])
        sizes.append(inbox.size_bytes())
    assert max(sizes) <= 4096 and sizes[-1] > 1000  # bounded, and still keeping recent records
    kept = [r.input for r in inbox.records()]
    assert kept[-1].startswith("input number 399") and not any(t.startswith("input number 0 ") for t in kept)
    inbox.append([Record("y" * 10_000)])  # one record over the whole bound: cut, still bounded
    assert inbox.size_bytes() <= 4096


def test_label_and_drop_by_id(tmp_path):
    inbox = Inbox(tmp_path / "lib")
    records = [Record(f"text {i}") for i in range(4)]
    inbox.append(records)
    assert inbox.label({records[1].id: "red", records[2].id: "blue"}) == 2
    assert [r.label for r in inbox.records()] == [None, "red", "blue", None]
    with pytest.raises(DataError, match="no inbox record with id nope"):
        inbox.label({"nope": "red"})
    assert [r.label for r in inbox.records()] == [None, "red", "blue", None]  # nothing half-done
    assert inbox.drop({records[0].id, records[3].id}) == 2
    assert [r.input for r in inbox.records()] == ["text 1", "text 2"]


def test_feedback_for_a_known_task_is_evaluation_data_only_from_a_trusted_sender(tmp_path):
    inbox = Inbox(tmp_path / "lib")
    labels_of = {"cooking": ["red", "blue"]}
    with pytest.raises(Forbidden, match="only a request with the server's admin key") as refused:
        take_feedback(inbox, labels_of, "oven apple", label="blue", task="cooking", trusted=False, source="anyone")
    assert refused.value.status == 403 and not inbox.folder.exists()  # nothing written
    assert take_feedback(inbox, labels_of, "oven apple", label="red", task="cooking", trusted=True,
                         source="admin feedback") == {"kept_as": "evaluation", "task": "cooking",
                                                      "source": "admin feedback"}
    assert inbox.evaluation("cooking") == [("oven apple", "red", "admin feedback")] and inbox.records() == []
    kept = take_feedback(inbox, labels_of, "a fever", label="green", trusted=False, source="anyone")
    assert kept["kept_as"] == "inbox" and inbox.records()[0].label == "green"
    with pytest.raises(DataError, match="not one of task 'cooking'"):
        take_feedback(inbox, labels_of, "oven", label="green", task="cooking", trusted=True, source="local")
    with pytest.raises(DataError, match="exactly one of label"):
        take_feedback(inbox, labels_of, "oven", label="red", target="red", trusted=True, source="local")


def test_evaluation_data_is_appended_and_kept_within_an_eighth_of_the_bound(tmp_path, monkeypatch):
    inbox = Inbox(tmp_path / "lib", max_bytes=64 << 10)  # 8 KiB for each task's evaluation data
    rewrites = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: rewrites.append(b) or real_replace(a, b))
    for i in range(400):  # about 90 bytes a line: 36 KB written in all
        inbox.add_evaluation("cooking", [Record(f"text {i}", kind="feedback", label="red")], source="local")
    path = inbox.folder / "eval" / "cooking.jsonl"
    assert path.stat().st_size <= 8 << 10
    assert 1 <= len(rewrites) <= 10  # cut back now and then, not rewritten on every example
    rows = inbox.evaluation("cooking")
    assert rows[-1] == ("text 399", "red", "local") and 40 <= len(rows) <= 95
    assert [int(t.split()[1]) for t, _, _ in rows] == list(range(400 - len(rows), 400))  # the newest, in order
    with open(path, "ab") as fh:
        fh.write(b'{"sentence": "torn\n[1, 2]\n')
    assert len(inbox.evaluation("cooking")) == len(rows) and inbox.skipped == 2
    with pytest.raises(LibraryError, match="not allowed"):
        inbox.evaluation("../../x")  # a tampered manifest's task name never leads out of the inbox
    with pytest.raises(LibraryError, match="not allowed"):
        inbox.add_evaluation("../x", [Record("t", kind="feedback", label="red")], source="local")


def test_telling_words_by_hand():
    inside = ["the fever and the nurse", "a nurse with a pill", "fever pill apple"]
    outside = ["apple oven", "apple river"]
    # fever, nurse, pill are in 2 of 3 inside and none outside (0.67); apple 1/3 - 2/2 < 0; stop words left out
    assert telling_words(inside, outside, top=3) == ["fever", "nurse", "pill"]


def _blob(center, n, seed):
    return np.random.default_rng(seed).normal(size=(n, 3)) * 0.3 + np.asarray(center, dtype=float)


def test_assign_finds_new_groups_and_leaves_known_ones_out():
    reference = np.concatenate([_blob([0, 0, 0], 50, 1), _blob([0, 10, 0], 50, 2)])  # two known tasks
    z = np.concatenate([_blob([10, 0, 0], 30, 3), _blob([0, 0, 10], 20, 4), _blob([0, 0, 0], 10, 5)])
    ids = assign(z, reference, min_cluster_size=5)
    new_a, new_b, known = ids[:30], ids[30:50], ids[50:]
    assert len(set(new_a.tolist())) == 1 and new_a[0] >= 0  # one cluster each
    assert len(set(new_b.tolist())) == 1 and new_b[0] >= 0 and new_b[0] != new_a[0]
    assert (known == -1).all()  # inputs among a known task's stand-ins are that task's
    assert (assign(z[:3], reference, min_cluster_size=5) == -1).all()  # too few to cluster


def test_one_new_domain_alone_is_one_cluster_with_stand_ins():
    reference = np.concatenate([_blob([0, 0, 0], 50, 1), _blob([0, 10, 0], 50, 2)])
    z = _blob([10, 0, 0], 40, 3)
    ids = set(assign(z, reference, min_cluster_size=5).tolist())
    assert len(ids) == 1 and min(ids) >= 0  # one cluster (numbered among the stand-ins' clusters)


def test_whitening_turns_mahalanobis_into_euclidean_and_stand_ins_match_their_task():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 4, generator=g, dtype=torch.float64) @ torch.diag(torch.tensor([1.0, 2.0, 0.5, 3.0],
                                                                                          dtype=torch.float64))
    stats = TaskStats.of(a)
    precision = torch.linalg.inv(stats.scatter / stats.count)
    x, y = torch.randn(2, 4, generator=g, dtype=torch.float64)
    factor = whitening(precision)
    assert torch.allclose(((x - y) @ factor).square().sum(), (x - y) @ precision @ (x - y))
    drawn = sample_like(stats, 4000, torch.Generator().manual_seed(1))
    assert torch.allclose(drawn.mean(0), stats.mean, atol=0.15)
    assert torch.allclose(drawn.std(0), a.std(0), rtol=0.08)


def test_clusters_are_saved_for_promote(tmp_path):
    inbox = Inbox(tmp_path / "lib")
    with pytest.raises(DataError, match="not been clustered yet"):
        saved_cluster(inbox, 0)
    records = [Record(f"fever {i}") for i in range(20)] + [Record(f"goal {i}") for i in range(12)]
    inbox.append(records)
    points = {r.input: ([10, 0, 0] if r.input.startswith("fever") else [0, 0, 10]) for r in records}

    def space(texts):
        z = np.stack([np.asarray(points[t], float) + 0.1 * np.sin(np.arange(3) * (i + 1)) for i, t in enumerate(texts)])
        return z, _blob([0, 0, 0], 50, 1)

    clusters = cluster_inbox(inbox, space, min_cluster_size=5, version=3)
    assert [(c.cluster, c.size) for c in clusters] == [(0, 20), (1, 12)]
    assert clusters[0].words[0] == "fever" and clusters[1].words[0] == "goal"
    assert saved_cluster(inbox, 1) == {r.id for r in records[20:]}
    assert json.loads((inbox.folder / "clusters.json").read_text())["library_version"] == 3
    with pytest.raises(DataError, match=r"no cluster 7 in the last clustering \(clusters: 0, 1\)"):
        saved_cluster(inbox, 7)
