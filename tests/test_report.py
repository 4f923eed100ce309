import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from clora.config import RunConfig
from clora.library import sha256_file
from clora.library.tensors import load_subspace
from clora.evaluation.report import build_report, oracle_matrix, report_markdown
from clora.evaluation.report_files import write_matrix_csv
from clora.workflows.run import run_stream

AFTER = [[0.9, 0.2], [0.5, 0.8]]


def test_oracle_uses_the_snapshot_each_task_was_learnt_in():
    assert oracle_matrix(AFTER, keeps_snapshots=True) == [[0.9, 0.2], [0.9, 0.8]]
    assert oracle_matrix(AFTER, keeps_snapshots=False) == AFTER


def test_markdown_is_in_percent():
    report = build_report(stream="s", method="orth", model="m", tasks=["a", "b"], base=[0.1, 0.1],
                          matrices={"sum": AFTER}, overlap=None, timing={"train_s": 1.0, "eval_s": 2.0})
    text = report_markdown(report)
    assert "| sum | 65.0 | -40.0 | 40.0 | 10.0 |" in text
    assert "| a | 90.0 | 20.0 |" in text


def test_csv_round_trip(tmp_path):
    write_matrix_csv(tmp_path / "m.csv", ["a", "b"], AFTER)
    rows = list(csv.reader(open(tmp_path / "m.csv")))
    assert rows[0] == ["after", "a", "b"]
    assert [[float(x) for x in r[1:]] for r in rows[1:]] == AFTER


@pytest.fixture(scope="module")
def orth_run(tiny_model_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "orth"
    stream = out.parent / "s.yaml"
    stream.write_text("tasks:\n" + "".join(
        f"  - {{name: t{i}, format: synthetic, instruction: Which colour, options: {{shift: {i}, n_train: 32, n_test: 16}}}}\n"
        for i in range(3)))
    config = RunConfig(stream=str(stream), out=out, model=str(tiny_model_dirs["bert"]), method="orth",
                       rank=2, epochs=1, settings={"subspace": "adapters"}, progress=False)
    return run_stream(config), out


def test_report_contract(orth_run):
    report, out = orth_run
    on_disk = json.loads((out / "report.json").read_text())
    for key in ("stream", "method", "model", "tasks", "base_accuracy", "modes", "overlap", "timing"):
        assert key in on_disk, key
    assert on_disk["method"] == "orth" and on_disk["tasks"] == ["t0", "t1", "t2"]
    assert len(on_disk["base_accuracy"]) == 3
    assert set(on_disk["modes"]) == {"oracle", "sum", "routed"}
    routed = on_disk["modes"]["routed"]
    assert 0 <= routed["routing_accuracy"] <= 1
    confusion = routed["routing_confusion"]
    assert sum(sum(row.values()) for row in confusion.values()) == 3 * 16  # every test input
    # the shares are the confusion matrix's diagonal, fallback column and the rest, over all inputs
    assert routed["routing_accuracy"] == sum(confusion[t][t] for t in confusion) / 48
    assert routed["routing_fallback"] == sum(row["fallback"] for row in confusion.values()) / 48
    assert abs(routed["routing_accuracy"] + routed["routing_fallback"] + routed["routing_misrouted"] - 1) < 1e-12
    assert routed["fwt"] is None  # the router cannot know a task before it is learnt
    assert "% fall back" in (out / "report.md").read_text()
    for mode, block in on_disk["modes"].items():
        assert set(block) >= {"accuracy_matrix", "average_accuracy", "bwt", "forgetting", "fwt"}
        matrix = block["accuracy_matrix"]
        # only what the metrics read is evaluated: i <= j, and i = j + 1 for FWT (not in routed mode)
        ahead = 0 if mode == "routed" else 1
        assert [[x is None for x in row] for row in matrix] == [[i > j + ahead for i in range(3)] for j in range(3)]
        assert all(0 <= x <= 1 for row in matrix for x in row if x is not None)
    assert on_disk["modes"]["oracle"]["bwt"] == 0.0  # frozen adapters: snapshot i never changes
    assert set(on_disk["timing"]) >= {"train_s", "eval_s"}
    assert on_disk["overlap"] <= 1e-5


def test_library_round_trip(orth_run):
    report, out = orth_run
    lib = out / "library"
    manifest = json.loads((lib / "manifest.json").read_text())
    assert manifest["family"] == "encoder" and manifest["target_modules"] == ["query", "value"]
    for rel, digest in manifest["files"].items():
        assert sha256_file(lib / rel) == digest
    adapters = [load_file(str(lib / t["adapter"])) for t in manifest["tasks"]]
    subspace = load_subspace(lib, manifest)
    module = "encoder.layer.0.attention.self.query"
    a0, a2 = adapters[0][f"{module}.lora_A"], adapters[2][f"{module}.lora_A"]
    assert a0.shape == (2, 32) and adapters[0][f"{module}.lora_B"].shape == (32, 2)
    assert (a0 @ a2.T).abs().max() < 1e-5  # stored adapters are orthogonal too
    u = subspace[module]
    assert u.shape == (32, 6) and torch.allclose(u.T @ u, torch.eye(6), atol=1e-5)
    assert manifest["tasks"][2]["snapshot"] == ["t0", "t1", "t2"]


def test_routed_mode_routes_distinct_domains_and_matches_oracle(tiny_model_dirs, tmp_path):
    stream = tmp_path / "two.yaml"
    stream.write_text("tasks:\n" + "".join(
        f"  - {{name: {d}, format: synthetic, instruction: Which colour, options: {{domain: {d}, shift: {i}, "
        f"n_train: 64, n_test: 32}}}}\n" for i, d in enumerate(["cooking", "sailing"])))
    report = run_stream(RunConfig(stream=str(stream), out=tmp_path / "out", model=str(tiny_model_dirs["bert"]),
                                  method="orth", rank=2, epochs=1, progress=False))
    routed, oracle = report["modes"]["routed"], report["modes"]["oracle"]
    # a tiny random BERT sees the domain words only faintly, and 64 examples make a rough
    # covariance (many unsure inputs fall back to sum); those it does route go to their own task
    confusion = routed["routing_confusion"]
    decided = sum(confusion[t][r] for t in confusion for r in ("cooking", "sailing"))
    own = confusion["cooking"]["cooking"] + confusion["sailing"]["sailing"]
    assert decided >= 16 and own / decided >= 0.9, confusion
    assert abs(routed["average_accuracy"] - oracle["average_accuracy"]) <= 0.15


def _overlap_by_hand(library) -> float:
    """Max over modules and adapter pairs of cos(smallest principal angle) between the A's row spaces,
    from the adapter files with scipy (independent of clora's own subspace maths)."""
    import itertools

    import numpy as np
    from scipy.linalg import subspace_angles

    from clora.library.layout import read_manifest

    manifest = read_manifest(library)
    adapters = [load_file(str(library / t["adapter"])) for t in manifest["tasks"] if t.get("adapter")]
    worst = 0.0
    for module in manifest["modules"]:
        rows = [a[f"{module}.lora_A"].double().numpy() for a in adapters]
        for a_i, a_t in itertools.combinations(rows, 2):
            worst = max(worst, float(np.cos(subspace_angles(a_i.T, a_t.T).min())))
    return worst


@pytest.mark.parametrize("kind,method", [("gpt2", "inc"), ("bert", "orth")])
def test_reported_overlap_is_the_principal_cosine_of_the_stored_adapters(kind, method, library_factory):
    library = library_factory(kind, method)
    report = json.loads((library.parent / "report.json").read_text())
    expected = _overlap_by_hand(library)
    if method == "inc":  # unconstrained random factors share directions: a report of 0 would be a lie
        assert expected > 0.05
        assert report["overlap"] == pytest.approx(expected, rel=1e-4)
        assert f"{report['overlap']:.2e}" in (library.parent / "report.md").read_text()
    else:
        assert expected < 1e-5 and report["overlap"] < 1e-5


def test_heatmap_colour_bar_reads_in_percent_like_its_cells():
    from clora.evaluation.plots import heatmap_figure

    fig = heatmap_figure(["a", "b"], [[0.5, None], [0.25, 1.0]], "t")
    image = fig.axes[0].images[0]
    assert image.get_clim() == (0.0, 100.0)
    data = image.get_array()
    assert data[0][0] == 50.0 and data[1][1] == 100.0 and data.mask[0][1]  # not evaluated: blank
    assert [t.get_text() for t in fig.axes[0].texts] == ["50", "25", "100"]
