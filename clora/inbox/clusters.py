"""Group the inbox's inputs into candidate tasks, in the router's own geometry.

The inputs' router features are whitened by the router's shared precision (euclidean
distance there is the router's Mahalanobis distance ``D``), and clustered together with
stand-ins for every task the library already has: 50 draws from each task's stored
feature statistics. Clustering is scikit-learn's HDBSCAN (Campello et al., 2013): the
number of clusters is found, not given; inputs that belong nowhere stay unclustered
(-1), and so do inputs that fall in a cluster made mostly of a known task's stand-ins
(they are that task's, not a new one).

Why the stand-ins: with only one new domain in the inbox, HDBSCAN has no denser region
to set it against. On the demo library it split that domain into fragments (the largest
cluster held 28 of 150 inputs in the whitened space) or called it all noise (raw MiniLM
features). With the known tasks present, the new domain is one cluster (150 of 150) and
two new domains are two.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from clora.errors import DataError
from clora.inbox.records import CLUSTERS, Inbox, Record

WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)


@dataclass
class Cluster:
    """One candidate task: its records, how many carry a label, its most telling words, a few inputs."""

    cluster: int
    size: int
    labelled: int
    words: list[str]
    examples: list[str]
    inputs: list[str]
    ids: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def assign(z: np.ndarray, reference: np.ndarray, min_cluster_size: int = 5) -> np.ndarray:
    """``(n,)`` cluster ids (-1: none) of inputs ``z`` ``(n, d)`` clustered beside known-task stand-ins
    ``reference`` ``(m, d)``; a cluster made mostly of stand-ins is a known task's, so -1 for its inputs."""
    from sklearn.cluster import HDBSCAN

    n = z.shape[0]
    if n < max(2, min_cluster_size):
        return np.full(n, -1)
    labels = HDBSCAN(min_cluster_size=min_cluster_size, copy=True).fit_predict(np.concatenate([z, reference]))
    inputs, stand_ins = labels[:n], labels[n:]
    for label in set(inputs.tolist()) - {-1}:
        if (stand_ins == label).sum() >= (inputs == label).sum():
            inputs = np.where(inputs == label, -1, inputs)
    return inputs


def telling_words(inside: list[str], outside: list[str], top: int = 8) -> list[str]:
    """The words found in the most of ``inside`` beyond their share of ``outside`` (stop words left out)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    def share(texts):
        counts = Counter(w for t in texts for w in set(WORD.findall(t.lower())))
        return {w: c / max(len(texts), 1) for w, c in counts.items()}

    ins, outs = share(inside), share(outside)
    scored = [(ins[w] - outs.get(w, 0.0), w) for w in ins if w not in ENGLISH_STOP_WORDS]
    return [w for _, w in sorted(scored, key=lambda s: (-s[0], s[1]))[:top]]


def cluster_inbox(inbox: Inbox, space: Callable[[list[str]], tuple], min_cluster_size: int = 5,
                  version: int | None = None) -> list[Cluster]:
    """Cluster every inbox record (largest cluster first) and save the assignment for ``promote``.

    ``space(texts) -> (z, reference)``: the records in the router's whitened space and the known
    tasks' stand-ins there (``LoadedLibrary.clustering_space``).
    """
    if isinstance(min_cluster_size, bool) or not isinstance(min_cluster_size, int) or min_cluster_size < 2:
        raise DataError(f"the smallest cluster must have at least 2 inputs, got {min_cluster_size!r}",
                        field="min_cluster_size")
    records = inbox.records()
    ids = np.zeros(0)
    if records:
        z, reference = space([r.input for r in records])
        ids = assign(np.asarray(z), np.asarray(reference), min_cluster_size)
    groups: dict[int, list[Record]] = {}
    for record, cid in zip(records, ids):
        if cid >= 0:
            groups.setdefault(int(cid), []).append(record)
    ordered = sorted(groups.values(), key=len, reverse=True)  # cluster 0 is the largest
    clusters = []
    for k, members in enumerate(ordered):
        inside = {r.id for r in members}
        texts = [r.input for r in members]
        clusters.append(Cluster(cluster=k, size=len(members), labelled=sum(r.answer_label is not None for r in members),
                                words=telling_words(texts, [r.input for r in records if r.id not in inside]),
                                examples=texts[:3], inputs=texts, ids=[r.id for r in members]))
    if not records:
        return clusters  # nothing to save: an inbox never written to stays unwritten
    with inbox.locked():
        (inbox.folder / CLUSTERS).write_text(json.dumps({"library_version": version, "clusters": {
            str(c.cluster): c.ids for c in clusters}}), encoding="utf-8")
    return clusters


def saved_cluster(inbox: Inbox, cluster: int) -> set[str]:
    """The record ids of ``cluster`` in the last saved clustering."""
    path = inbox.folder / CLUSTERS
    if not path.exists():
        raise DataError("the inbox has not been clustered yet; run `clora inbox LIB cluster` first", field="cluster")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))["clusters"]
        if not isinstance(saved, dict) or not all(isinstance(v, list) and all(isinstance(i, str) for i in v)
                                                  for v in saved.values()):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise DataError(f"the saved clustering {str(path)!r} is damaged; run `clora inbox LIB cluster` again",
                        field="cluster") from None
    if str(cluster) not in saved:
        known = ", ".join(sorted(saved, key=int)) or "none"
        raise DataError(f"no cluster {cluster} in the last clustering (clusters: {known})", field="cluster")
    return set(saved[str(cluster)])
