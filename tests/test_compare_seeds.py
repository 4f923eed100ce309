import json
import shutil

import pytest
from click.testing import CliRunner
from conftest import assert_one_line_error

from clora.cli.main import cli
from clora.workflows.compare import Comparison
from clora.workflows.compare_seeds import mean_sd, parse_seeds, seeds_markdown, summarize_seeds
from clora.errors import ConfigError


def test_mean_sd_is_the_mean_and_sample_standard_deviation():
    stat = mean_sd([0.6, 0.7, 0.8])
    assert stat["mean"] == pytest.approx(0.7) and stat["sd"] == pytest.approx(0.1)  # sqrt((0.01 + 0 + 0.01) / 2)
    assert stat["values"] == [0.6, 0.7, 0.8]
    assert mean_sd([0.5]) == {"mean": 0.5, "sd": 0.0, "values": [0.5]}
    assert mean_sd([None, None])["mean"] is None  # mtl's BWT does not exist at any seed


def test_parse_seeds_reads_integers_and_refuses_bad_lists():
    assert parse_seeds(" 0, 2,5 ") == [0, 2, 5]
    for text, fragment in [("0,a", "comma-separated integers"), ("1,1", "listed twice"), (",", "no seed"),
                           ("-1", "0 or more")]:
        with pytest.raises(ConfigError, match=fragment):
            parse_seeds(text)


def _table(seed: int, orth_sum: float, inc_sum: float, kept=()) -> Comparison:
    """A hand-made compare_methods table: two methods, orth with two modes."""
    def block(aa, bwt):
        return {"average_accuracy": aa, "bwt": bwt, "forgetting": -bwt, "fwt": 0.01}
    return Comparison.from_dict({
        "stream": "s", "model": "m", "tasks": ["a", "b"], "kept": list(kept), "settings": {"rank": 8, "seed": seed},
        "methods": {"orth": {"lr": 0.003, "overlap": 1e-8, "train_s": 100.0 + seed,
                             "modes": {"oracle": block(0.60, 0.0), "sum": block(orth_sum, 0.01)}},
                    "inc": {"lr": 0.003, "overlap": 0.4, "train_s": 90.0, "modes": {"sum": block(inc_sum, -0.07)}}}})


def test_summary_averages_every_number_over_the_seeds():
    summary = summarize_seeds({0: _table(0, 0.68, 0.64), 3: _table(3, 0.70, 0.60, kept=["inc"])})
    assert summary["seeds"] == [0, 3] and summary["settings"] == {"rank": 8}  # the seed is no shared setting
    orth_sum = summary["methods"]["orth"]["modes"]["sum"]["average_accuracy"]
    assert orth_sum["mean"] == pytest.approx(0.69) and orth_sum["sd"] == pytest.approx(0.02 / 2 ** 0.5)
    assert orth_sum["values"] == [0.68, 0.70]
    assert summary["methods"]["inc"]["modes"]["sum"]["bwt"]["sd"] == 0.0
    assert summary["methods"]["orth"]["train_s"]["mean"] == pytest.approx(101.5)
    assert summary["kept"] == {"3": ["inc"]}
    text = seeds_markdown(summary)
    assert "| orth | 0.003 | sum | 69.0 ± 1.4 | 1.0 ± 0.0 |" in text  # 0.02 / sqrt(2) = 1.41 points
    assert "| inc | sum | 64.0 | 60.0 |" in text  # the per-seed AA table
    assert "seed 3: finished runs kept (--resume): inc" in text


def test_paired_gaps_subtract_seed_by_seed_in_the_modes_both_methods_have():
    summary = summarize_seeds({0: _table(0, 0.68, 0.64), 3: _table(3, 0.70, 0.60)})
    assert summary["reference"] == "orth"  # clora's own method when it is compared
    gap = summary["gaps"]["inc"]
    assert list(gap) == ["sum"]  # inc has no oracle mode in these tables
    assert gap["sum"]["values"] == pytest.approx([0.04, 0.10])
    assert gap["sum"]["mean"] == pytest.approx(0.07) and gap["sum"]["sd"] == pytest.approx(0.06 / 2 ** 0.5)
    assert "| inc | sum | +4.0 | +10.0 | +7.0 ± 4.2 |" in seeds_markdown(summary)
    tie = summarize_seeds({0: _table(0, 0.6, 0.6004), 1: _table(1, 0.6, 0.6)})
    assert "| inc | sum | +0.0 | +0.0 | +0.0 ± 0.0 |" in seeds_markdown(tie)  # -0.04 points reads +0.0, not -0.0
    against_inc = summarize_seeds({0: _table(0, 0.68, 0.64), 3: _table(3, 0.70, 0.60)}, reference="inc")
    assert against_inc["gaps"]["orth"]["sum"]["mean"] == pytest.approx(-0.07)
    with pytest.raises(ConfigError, match="reference method 'mtl' is not among the compared methods"):
        summarize_seeds({0: _table(0, 0.68, 0.64)}, reference="mtl")


def _args(tiny_model_dirs, synthetic_stream, out):
    return ["compare", str(synthetic_stream), "--methods", "inc,orth", "--model", str(tiny_model_dirs["bert"]),
            "--rank", "2", "--epochs", "1", "--out", str(out), "--quiet"]


def test_compare_over_seeds_writes_one_comparison_per_seed_and_their_summary(tiny_model_dirs, synthetic_stream,
                                                                              tmp_path):
    out = tmp_path / "cmp"
    args = _args(tiny_model_dirs, synthetic_stream, out) + ["--seeds", "0,1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "compare.json").read_text())
    per_seed = [json.loads((out / f"seed-{s}" / "compare.json").read_text()) for s in (0, 1)]
    assert [t["settings"]["seed"] for t in per_seed] == [0, 1]
    for method in ("inc", "orth"):
        values = [t["methods"][method]["modes"]["sum"]["average_accuracy"] for t in per_seed]
        stat = summary["methods"][method]["modes"]["sum"]["average_accuracy"]
        assert stat["values"] == values and stat["mean"] == pytest.approx(sum(values) / 2)
        assert (out / "seed-1" / method / "report.json").is_file()
    assert summary["methods"]["orth"]["overlap"]["mean"] <= 1e-5
    assert "over seeds 0, 1" in (out / "compare.md").read_text() and "± " in result.output
    gap = summary["gaps"]["inc"]["sum"]
    assert gap["values"] == pytest.approx([t["methods"]["orth"]["modes"]["sum"]["average_accuracy"]
                                           - t["methods"]["inc"]["modes"]["sum"]["average_accuracy"] for t in per_seed])
    assert (out / "compare.png").stat().st_size > 1000

    # an interruption in the second seed: its orth run and both summaries are gone
    shutil.rmtree(out / "seed-1" / "orth")
    (out / "seed-1" / "compare.json").unlink()
    (out / "compare.json").unlink()
    assert_one_line_error(CliRunner().invoke(cli, args), "unfinished comparison over seeds (started: 0, 1); resume it to keep its finished runs")
    assert CliRunner().invoke(cli, args).output.rstrip().endswith("(--resume)")  # the CLI names the flag
    result = CliRunner().invoke(cli, args + ["--resume"])
    assert result.exit_code == 0, result.output
    resumed = json.loads((out / "compare.json").read_text())
    assert resumed["kept"] == {"0": ["inc", "orth"], "1": ["inc"]}
    assert resumed["methods"]["orth"]["modes"] == summary["methods"]["orth"]["modes"]  # seeded: the same numbers


def test_one_seed_in_seeds_is_a_plain_comparison(tiny_model_dirs, synthetic_stream, tmp_path):
    out = tmp_path / "cmp"
    result = CliRunner().invoke(cli, _args(tiny_model_dirs, synthetic_stream, out) + ["--seeds", "2"])
    assert result.exit_code == 0, result.output
    table = json.loads((out / "compare.json").read_text())
    assert table["settings"]["seed"] == 2 and (out / "inc" / "report.json").is_file()
    assert not (out / "seed-2").exists()


def test_seed_and_seeds_together_are_refused(tmp_path):
    result = CliRunner().invoke(cli, ["compare", "demo", "--seed", "1", "--seeds", "0,1", "--out", str(tmp_path / "c")])
    assert_one_line_error(result, "give --seed or --seeds, not both")
    assert not (tmp_path / "c").exists()
    result = CliRunner().invoke(cli, ["compare", "demo", "--seeds", "0,x", "--out", str(tmp_path / "c")])
    assert_one_line_error(result, "seeds must be comma-separated integers")
    result = CliRunner().invoke(cli, ["compare", "demo", "--methods", "inc,orth", "--seeds", "0,1", "--reference", "olie",
                                      "--out", str(tmp_path / "c")])
    assert_one_line_error(result, "reference method 'olie' is not among the compared methods (inc, orth)")
    assert not (tmp_path / "c").exists()
    result = CliRunner().invoke(cli, ["compare", "demo", "--seeds", "3", "--reference", "orth", "--out", str(tmp_path / "c")])
    assert_one_line_error(result, "it needs two or more seeds (--reference)")
    assert not (tmp_path / "c").exists()
