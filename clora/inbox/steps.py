"""The learning loop as one object: ``clora.open_library(path).inbox()`` (and ``clora inbox LIB ...``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clora.errors import DataError
from clora.inbox.clusters import Cluster, cluster_inbox, saved_cluster
from clora.inbox.feedback import take_feedback
from clora.inbox.promote import PromotionRequest, PromotionResult, promote
from clora.inbox.records import Inbox, Record
from clora.library.layout import load_manifest


@dataclass
class LibraryInbox:
    """The inbox of the library at ``library`` (``folder``: where it lives, default ``<library>.inbox``)."""

    library: Path
    folder: Path | None = None

    def __post_init__(self) -> None:
        self.library = Path(self.library)
        load_manifest(self.library)  # a missing or broken library: one line, now
        self.store = Inbox(self.library, folder=self.folder)

    def list(self, kind: str | None = None) -> list[Record]:
        """Every record (``kind``: only ``unrouted`` or only ``feedback``), oldest first."""
        return [r for r in self.store.records() if kind is None or r.kind == kind]

    def feedback(self, text: str, label: str | None = None, target: str | None = None,
                 task: str | None = None) -> dict:
        """One labelled example (what ``POST /feedback`` does). Here, by whoever holds the library's files,
        feedback naming a library task is trusted as its evaluation data (source ``local``)."""
        labels_of = {t.name: list(t.labels) for t in load_manifest(self.library).tasks}
        return take_feedback(self.store, labels_of, text, label, target, task, trusted=True, source="local")

    def cluster(self, min_cluster_size: int = 5, device: str = "auto") -> list[Cluster]:
        """Group the records into candidate tasks (largest first), on the router's features."""
        from clora.serving.inference import load_library

        loaded = load_library(self.library, device=device)
        return cluster_inbox(self.store, loaded.clustering_space, min_cluster_size, version=loaded.version)

    def label(self, labels: dict[str, str], target: bool = False) -> int:
        """Give records (by id) their label (or free-text target); returns how many were labelled."""
        if not labels:
            raise DataError("no labels given (pairs of record id and label)", field="labels")
        return self.store.label(labels, "target" if target else "label")

    def promote(self, cluster: int, name: str, *, labels: list[str] | None = None, max_drop: float = 1.0,
                epochs: int | None = None, seed: int | None = None, device: str = "auto",
                progress: bool = True) -> PromotionResult:
        """Train cluster ``cluster`` as task ``name`` and commit it if the gate passes (no earlier task's routed
        accuracy drops by more than ``max_drop`` points); ``epochs`` ``None``: at least 45 steps."""
        return promote(PromotionRequest(self.library, cluster, name, labels=labels, max_drop=max_drop,
                                        epochs=epochs, seed=seed, device=device, progress=progress,
                                        inbox_folder=self.folder))

    def drop(self, ids: set[str] | None = None, cluster: int | None = None, everything: bool = False) -> int:
        """Remove records by id, by cluster (of the last clustering) or all; returns how many went."""
        chosen = set(ids or ())
        if cluster is not None:
            chosen |= saved_cluster(self.store, cluster)
        if everything:
            chosen |= {r.id for r in self.store.records()}
        if not chosen:
            raise DataError("nothing to drop: give record ids, a cluster or all", field="ids")
        return self.store.drop(chosen, must_exist=set(ids or ()))
