"""Methods own their settings: one dataclass per method, from which the CLI, the library and the report derive."""

import dataclasses
import json
from pathlib import Path

import pytest

from clora.config import METHODS, RunConfig
from clora.errors import ConfigError
from clora.settings import MethodSettings, owners_of, registered, settings_class

DATA = Path(__file__).with_name("data")
#: a manifest that the code before this change wrote (an olora library of the demo stream, commit 932567b):
#: its settings hold every method's knobs, each at its default
BEFORE = DATA / "manifest_before_method_settings.json"
FIRST_FORMAT = DATA / "manifest_first_format.json"


def test_every_method_has_one_settings_class_and_one_method_class():
    from clora.methods import METHOD_CLASSES

    assert set(METHODS) == set(METHOD_CLASSES)
    assert set(registered()) == set(METHODS)
    for method in METHODS:
        assert settings_class(method).method == method and issubclass(settings_class(method), MethodSettings)


def test_a_knob_is_declared_once_with_a_default_and_help():
    for method in METHODS:
        for knob in settings_class(method).knobs():
            assert knob.metadata["help"].endswith("."), (method, knob.name)
            assert owners_of(knob.name) == [method]  # no two methods share a knob name (one CLI option each)


@pytest.mark.parametrize("method", METHODS)
def test_settings_round_trip_through_json(method):
    cls = settings_class(method)
    settings = cls()
    again = cls.from_dict(json.loads(json.dumps(settings.to_dict())))
    assert again == settings and type(again) is cls


def _changed(knob):
    """A valid value other than ``knob``'s default: another choice, an int one up, a number halved."""
    meta, default = knob.metadata, knob.default
    if meta["choices"]:
        return next(c for c in meta["choices"] if c != default)
    if isinstance(meta["type"], tuple):
        return tuple(v / 2 for v in default)
    if meta["type"] is int:
        return (default or 1) + 1
    return (default or 0.5) / 2


@pytest.mark.parametrize("method", METHODS)
def test_settings_round_trip_with_every_knob_changed(method):
    cls = settings_class(method)
    settings = cls(**{knob.name: _changed(knob) for knob in cls.knobs()})
    assert all(getattr(settings, k.name) != k.default for k in cls.knobs())
    assert cls.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    config = RunConfig(stream="x", method=method, settings=settings.to_dict())  # as a CLI or a file gives them
    assert config.settings == settings


def test_run_config_takes_settings_as_a_mapping_an_instance_or_none():
    from clora.methods.catalog import OLoRASettings

    assert RunConfig(stream="x", method="olora").settings == OLoRASettings()
    assert RunConfig(stream="x", method="olora", settings={"lambda1": 0.1}).settings == OLoRASettings(lambda1=0.1)
    assert RunConfig(stream="x", method="olora", settings=OLoRASettings(lambda2=0.3)).settings.lambda2 == 0.3
    assert RunConfig(stream="x", method="olie").lr == 1e-2 and RunConfig(stream="x", method="osf").lr == 1e-4
    with pytest.raises(ConfigError, match="the settings given are olora's, but the method is orth") as error:
        RunConfig(stream="x", method="orth", settings=OLoRASettings())
    assert error.value.field == "settings"
    with pytest.raises(ConfigError, match="lambda1 is not a setting of method orth \\(a setting of olora\\)"):
        RunConfig(stream="x", method="orth", settings={"lambda1": 0.1})
    with pytest.raises(ConfigError, match="lambda1 must be non-negative, got -1"):
        RunConfig(stream="x", method="olora", settings={"lambda1": -1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        OLoRASettings().lambda1 = 2.0


def test_for_method_keeps_each_methods_own_knobs():
    config = RunConfig(stream="x", method="orth", lr=1e-3)
    knobs = {"lambda1": 0.2, "frame_lr": 0.05}
    olora = config.for_method("olora", knobs)
    assert olora.settings.lambda1 == 0.2 and olora.lr == 3e-3  # no rate given: the method's own default
    assert config.for_method("orth", knobs, lr=2e-3).settings.frame_lr == 0.05
    assert config.for_method("inc", knobs).settings.to_dict() == {}


def test_a_report_records_the_shared_settings_then_the_methods_resolved_knobs():
    from clora.workflows.run import planned, run_settings

    config = planned(RunConfig(stream="x", method="orth", lr=2e-3), ["classification"] * 3)
    settings = run_settings(config)
    assert list(settings)[:11] == ["rank", "alpha", "epochs", "min_steps", "lr", "batch_size", "max_train",
                                   "max_test", "seed", "temperature", "max_length"]
    assert settings["frame_lr"] == 2e-3 and settings["capacity_tasks"] == 3 and settings["energy"] == 0.95
    assert "lambda1" not in settings
    assert "frame_lr" not in run_settings(RunConfig(stream="x", method="olora"))
    assert "quantize" not in settings and "quantize" not in run_settings(RunConfig(stream="x", quantize="none"))
    quantized = run_settings(RunConfig(stream="x", quantize="nf4"))
    assert quantized["quantize"] == "nf4" and list(quantized).index("quantize") == 11  # after the shared ones


def test_a_library_stores_the_shared_settings_and_the_methods_own():
    from clora.library.build import LIBRARY_SETTINGS, stored_settings

    stored = stored_settings(RunConfig(stream="x", method="osf", settings={"osf_preserve": (0.2, 0.5)}))
    assert list(stored) == [*LIBRARY_SETTINGS, "osf_preserve"] and stored["osf_preserve"] == [0.2, 0.5]
    assert "frame_lr" not in stored


@pytest.mark.parametrize("path", [BEFORE, FIRST_FORMAT])
def test_libraries_written_before_methods_owned_their_settings_still_load(path):
    from clora.library.layout import parse_manifest
    from clora.library.manifest import Manifest
    from clora.workflows.library_model import library_config

    data = json.loads(path.read_text())
    config = library_config(Manifest.of(parse_manifest(json.dumps(data), "old")))
    assert config.method == data["method"] and config.lr == data["settings"]["lr"]
    assert config.settings == settings_class(data["method"]).from_dict(data["settings"], strict=False)
    if data["method"] == "orth":  # the first format: orth, its own knobs as stored, nulls elsewhere
        assert (config.settings.subspace, config.settings.energy, config.temperature) == ("activations", 0.95, 0.05)
    else:
        assert config.settings.lambda1 == 0.5
        data["settings"]["lambda1"] = 0.25  # a knob the library changed is the one it trains new tasks with
        assert library_config(Manifest.of(data)).settings.lambda1 == 0.25


def test_a_bad_stored_knob_is_named_when_the_manifest_is_read():
    from clora.library.schema import manifest_type_problem

    data = json.loads(BEFORE.read_text())
    assert manifest_type_problem(data) is None
    data["settings"]["lambda1"] = -3
    assert manifest_type_problem(data) == "settings.lambda1: lambda1 must be non-negative, got -3"
    data["settings"]["lambda1"], data["settings"]["energy"] = 0.5, 7  # another method's key: not this library's
    assert manifest_type_problem(data) is None
    data["method"] = "magic"
    assert manifest_type_problem(data).startswith("method: unknown method 'magic'")


def test_every_knob_is_an_option_of_run_and_compare_with_its_owner_named():
    from click.testing import CliRunner

    from clora.cli.main import cli

    for command in ("run", "compare"):
        text = " ".join(CliRunner().invoke(cli, [command, "--help"], terminal_width=400).output.split())
        for method in METHODS:
            for knob in settings_class(method).knobs():
                assert f"--{knob.name.replace('_', '-')}" in text and f"{method}: " in text


def test_a_comparison_refuses_a_knob_no_compared_method_has(tmp_path, synthetic_stream):
    from click.testing import CliRunner
    from conftest import assert_one_line_error

    from clora.cli.main import cli

    result = CliRunner().invoke(cli, ["compare", str(synthetic_stream), "--methods", "seq,inc", "--lambda1", "0.2",
                                      "--out", str(tmp_path / "c")])
    assert_one_line_error(result, "lambda1 is a setting of olora, which this comparison does not run (--lambda1)")
    assert not (tmp_path / "c").exists()


def test_the_methods_page_lists_every_knob_and_default_rate():
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "methods.md").read_text()
    table = text.split("## Each method's settings", 1)[1].split("\n\n")[2]
    rows = [line.split("|")[1:4] for line in table.splitlines()[2:]]
    listed = {}
    for names, knobs, rate in rows:
        for method in re.findall(r"`(\w+)`", names):
            listed[method] = (set(re.findall(r"`(\w+)`", knobs)), float(rate))
    assert set(listed) == set(METHODS)
    for method, (knobs, rate) in listed.items():
        assert knobs == {k.name for k in settings_class(method).knobs()}, method
        assert rate == settings_class(method).default_lr, method
