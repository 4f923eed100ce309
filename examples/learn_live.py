"""Learn live: a served library meets a domain it has never seen, records it, and grows a task for it.

1. A copy of LIBRARY is served (a real HTTP server on loopback, ``--record-unrouted``).
2. Traffic: every known task's test inputs mixed with the test inputs of a new synthetic
   domain (``--domain``, default medicine). The inputs the router falls back on land in
   the inbox.
3. ``clora inbox cluster``: the largest cluster should hold the new domain.
4. ``--feedback`` labelled examples of the new domain (its training inputs, not its test
   inputs) are sent to ``POST /feedback``; the inbox is clustered again and the cluster
   holding the feedback is promoted as a new task (with the gate: no earlier task may
   lose more than 1 point of routed accuracy).
5. The same traffic again, answered by the new version the server picked up live.

Prints JSON with every share and accuracy (``--json FILE`` also writes it: docs/learning-live.md's
table is rendered from it by ``table``).

    clora run demo --out clora-runs/demo-orth
    python examples/learn_live.py clora-runs/demo-orth/library --json docs/benchmarks-data/learn_live.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path


def serve_in_thread(library: Path, inbox_folder: Path):
    """A ``clora serve --record-unrouted`` server on a free loopback port, in this process; (server, port)."""
    from clora.inbox.hooks import server_hooks
    from clora.inbox.records import Inbox
    from clora.serving.app import ServeSettings
    from clora.serving.inference import load_library
    from clora.serving.server import listen, make_server

    settings = ServeSettings(**server_hooks(Inbox(library, folder=inbox_folder), record_unrouted=True), loop_nice=0)
    sock = listen("127.0.0.1", 0)
    server = make_server(load_library(library, device="cpu"), "127.0.0.1", 0, settings)
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, sock.getsockname()[1]


def call(port: int, route: str, body: dict) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{route}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def health(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as response:
        return json.loads(response.read())


def answer_all(port: int, examples: list, chunk: int = 16) -> list[dict]:
    out = []
    for i in range(0, len(examples), chunk):
        out += call(port, "/predict", {"inputs": [e.text for e in examples[i:i + chunk]]})["predictions"]
    return out


def traffic(library: Path, domain: str, shift: int, n_new: int, seed: int = 0):
    """``({task: test examples}, new-domain test examples, new-domain training examples)``."""
    from clora.data.loaders import load_referenced_task
    from clora.data.synthetic import synthetic_examples
    from clora.library.layout import read_manifest

    known = {t["name"]: list(load_referenced_task(t["data"]).test) for t in read_manifest(library)["tasks"]
             if t.get("data")}
    train, test, _ = synthetic_examples(domain, {"domain": domain, "shift": shift, "n_train": 200,
                                                 "n_test": n_new, "seed": seed})
    return known, test, train


def accuracy(answers: list[dict], examples: list) -> float:
    return 100.0 * sum(a["prediction"] == e.target for a, e in zip(answers, examples)) / max(len(examples), 1)


def scenario(library: Path, work: Path, domain: str = "medicine", shift: int = 1, n_new: int = 200,
             n_feedback: int = 60, progress: bool = False) -> dict:
    from clora.inbox.steps import LibraryInbox

    lib = work / "library"
    shutil.copytree(library, lib, ignore=shutil.ignore_patterns(".lock", ".readers"))
    inbox_folder = work / "library.inbox"
    known, new_test, new_train = traffic(lib, domain, shift, n_new)
    server, port = serve_in_thread(lib, inbox_folder)
    steps = LibraryInbox(lib, inbox_folder)
    try:
        version_before = health(port)["version"]
        before = {name: answer_all(port, examples) for name, examples in known.items()}
        new_before = answer_all(port, new_test)
        recorded = Counter(r.input for r in steps.list("unrouted"))
        new_inputs = {e.text for e in new_test}
        in_inbox = {"new_domain": 100.0 * sum(recorded[e.text] > 0 for e in new_test) / len(new_test),
                    "known_tasks": 100.0 * sum(recorded[e.text] > 0 for ex in known.values() for e in ex)
                    / sum(len(ex) for ex in known.values())}
        clusters = steps.cluster()
        best = max(clusters, key=lambda c: len(new_inputs & set(c.inputs)), default=None)
        largest_share = 100.0 * len(new_inputs & set(best.inputs)) / len(new_inputs) if best else 0.0
        for e in new_train[:n_feedback]:
            call(port, "/feedback", {"input": e.text, "label": e.target})
        feedback_inputs = {e.text for e in new_train[:n_feedback]}
        clusters = steps.cluster()
        holding = [c for c in clusters if feedback_inputs & set(c.inputs)]
        result = None
        if holding:  # a router that cannot tell the new domain apart (a tiny random model) may give none
            target = max(holding, key=lambda c: len(feedback_inputs & set(c.inputs)))
            result = steps.promote(target.cluster, domain, progress=progress)
        after = {name: answer_all(port, examples) for name, examples in known.items()}
        new_after = answer_all(port, new_test)
        version_after = health(port)["version"]
    finally:
        server.should_exit = True
    return {
        "library": str(library), "new_domain": domain, "inputs": {"known": {k: len(v) for k, v in known.items()},
                                                                  "new": len(new_test)},
        "in_inbox_pct": in_inbox, "new_domain_in_one_cluster_pct": largest_share,
        "clusters": [{"cluster": c.cluster, "size": c.size, "words": c.words[:5]} for c in clusters],
        "promotion": None if result is None else {
            "committed": result.committed, "message": result.message(), "examples": result.examples,
            "gate": [{"task": r.task, "before": r.before, "after": r.after} for r in result.gate]},
        "new_domain_before": {"accuracy": accuracy(new_before, new_test),
                              "fallback_pct": 100.0 * sum(a["source"] == "fallback" for a in new_before) / len(new_test)},
        "new_domain_after": {"accuracy": accuracy(new_after, new_test),
                             "routed_to_new_pct": 100.0 * sum(a["task"] == domain for a in new_after) / len(new_test)},
        "served_version": {"before": version_before, "after": version_after},
        "known_tasks": {name: {"before": accuracy(before[name], ex), "after": accuracy(after[name], ex)}
                        for name, ex in known.items()},
    }


def table(result: dict) -> str:
    """The figures docs/learning-live.md shows beside the acceptance bounds they were held to."""
    new, n_new = result["new_domain"], result["inputs"]["new"]
    n_known = sum(result["inputs"]["known"].values())
    inbox = result["in_inbox_pct"]
    known = "; ".join(f"{name} {v['before']:.1f} -> {v['after']:.1f}" for name, v in result["known_tasks"].items())
    rows = [("", "figure", "acceptance"),
            (f"{new} inputs in the inbox", f"{inbox['new_domain']:.1f}% ({round(inbox['new_domain'] * n_new / 100)} "
             f"of {n_new})", "at least 80%"),
            ("known tasks' inputs in the inbox", f"{inbox['known_tasks']:.3f}% ({round(inbox['known_tasks'] * n_known / 100)}"
             f" of {n_known})", "at most 5%"),
            (f"{new} inputs in the cluster that holds most of them", f"{result['new_domain_in_one_cluster_pct']:.1f}%",
             "at least 90%"),
            (f"after promotion: {new} routed to the new task", f"{result['new_domain_after']['routed_to_new_pct']:.1f}%",
             "at least 90%"),
            (f"after promotion: {new} answered correctly", f"{result['new_domain_after']['accuracy']:.1f}% "
             f"({result['new_domain_before']['accuracy']:.1f}% before)", "at least 90%"),
            ("known tasks' routed accuracy, before -> after", known, "within 1 point"),
            ("served version, before -> after", f"{result['served_version']['before']} -> "
             f"{result['served_version']['after']}", "a new version, no restart")]
    lines = [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join([lines[0], "|---|---|---|", *lines[1:]])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("library", type=Path)
    ap.add_argument("--domain", default="medicine", help="the new synthetic domain (clora.data.synthetic.DOMAINS)")
    ap.add_argument("--shift", type=int, default=1, help="its cue-to-colour rotation")
    ap.add_argument("--feedback", type=int, default=60, help="labelled examples sent to POST /feedback")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="clora-learn-live-"))
    try:
        result = scenario(args.library, work, args.domain, args.shift, n_feedback=args.feedback, progress=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
