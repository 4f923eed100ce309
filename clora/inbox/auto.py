"""``clora serve --auto-promote``: a background thread that runs the gated promotion on its own.

Every ``every_s`` seconds it looks at the inbox; when at least ``min_examples`` labelled
records wait, it clusters the inbox and promotes the largest cluster holding
``min_examples`` labelled records (named ``auto-<its most telling word>``), with the same
gate as ``clora inbox promote``. It never holds a request: it loads its own copy of the
library, trains and evaluates on its thread (started after the server lowered the event
loop's priority, so it runs at that lower priority too) and commits a new version, which
the server then picks up live as it does any other. A cluster the gate refused is not
tried again until its labelled examples change.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from clora.errors import CloraError
from clora.inbox.clusters import cluster_inbox
from clora.inbox.promote import PromotionRequest, PromotionResult, promote
from clora.inbox.records import Inbox
from clora.library.layout import load_manifest
from clora.serving.inference import load_library

log = logging.getLogger("clora")


@dataclass
class AutoPromoter:
    library: Path
    min_examples: int = 40
    every_s: float = 30.0
    max_drop: float = 1.0
    device: str = "auto"
    min_cluster_size: int = 5
    inbox_folder: Path | None = None
    #: what the last attempt did (for /health): None, or {"cluster", "name", "committed", "message"}
    last: dict | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _refused: set = field(default_factory=set)
    _thread: threading.Thread | None = None
    #: (records and their labels, library version) of the last look that attempted nothing: the next look
    #: loads the library only when a record, a label or the version has changed since
    _looked_at: tuple | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="clora-auto-promote", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 600.0) -> None:
        """Stop looking; wait (up to ``timeout`` s) for a look or promotion in progress to end, so that nothing of
        it runs on after the server (or a test) has gone on."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.step()
            except CloraError as exc:  # a refusal or bad data: say so and keep serving
                log.warning("auto-promote: %s", exc)
                self.last = {"message": str(exc), "committed": False}
            except Exception as exc:  # pragma: no cover - never take the server down
                log.exception("auto-promote failed")
                self.last = {"message": f"failed: {exc}", "committed": False}

    def step(self) -> PromotionResult | None:
        """One look at the inbox; the promotion's result when one was attempted."""
        inbox = Inbox(self.library, folder=self.inbox_folder)
        records = inbox.records()
        labelled_ids = {r.id for r in records if r.answer_label is not None}
        if len(labelled_ids) < self.min_examples:
            return None
        looking_at = (frozenset((r.id, r.answer_label) for r in records), load_manifest(self.library).version)
        if looking_at == self._looked_at:
            return None  # nothing new since a look that promoted nothing: no need to load the model again
        loaded = load_library(self.library, device=self.device)
        clusters = cluster_inbox(inbox, loaded.clustering_space, self.min_cluster_size, version=loaded.version)
        del loaded
        ready = [c for c in clusters if c.labelled >= self.min_examples]
        for cluster in ready:
            key = frozenset(set(cluster.ids) & labelled_ids)
            if key in self._refused:
                continue
            name = self._name(cluster.words)
            result = promote(PromotionRequest(self.library, cluster.cluster, name, max_drop=self.max_drop,
                                              device=self.device, progress=False, inbox_folder=self.inbox_folder,
                                              require_checked=True))
            if not result.committed:
                self._refused.add(key)
            log.info("auto-promote: %s", result.message())
            self.last = {"cluster": cluster.cluster, "name": name, "committed": result.committed,
                         "message": result.message()}
            return result  # refused: the next look tries the next ready cluster
        self._looked_at = looking_at
        return None

    def _name(self, words: list[str]) -> str:
        taken = set(load_manifest(self.library).names)
        word = re.sub(r"[^A-Za-z0-9]", "", words[0])[:30] if words else ""
        stem = f"auto-{word or 'task'}"
        name, n = stem, 1
        while name in taken:
            n += 1
            name = f"{stem}-{n}"
        return name
