"""The typed manifest: parsed once at the disk edge, every reader's default in one place, round trips exact."""

import dataclasses
import json
from pathlib import Path

import pytest

from clora.data.task import DEFAULT_PROMPT, GENERATION_PROMPT
from clora.library.build import next_manifest
from clora.library.layout import load_manifest, parse_manifest, read_manifest
from clora.library.manifest import Manifest, TaskEntry, on_disk, task_of

FIRST_FORMAT = Path(__file__).with_name("data") / "manifest_first_format.json"


def test_a_manifest_the_first_library_format_wrote_reads_with_todays_defaults():
    """The file is what the first library code (commit 79a4c6a) wrote: no task kinds, no router, no min_steps."""
    text = FIRST_FORMAT.read_text()
    manifest = Manifest.of(parse_manifest(text, "old"))
    assert manifest.version == 2 and manifest.previous_version == 1 and manifest.rank == 8
    assert manifest.names == ["cooking", "sailing"] and manifest.target_modules == ("query", "value")
    cooking, sailing = manifest.tasks
    assert (cooking.kind, cooking.metric, cooking.max_new_tokens) == ("classification", "accuracy", 32)
    assert cooking.router is None and cooking.data is None and sailing.data["path"] == "/data/sailing.jsonl"
    assert manifest.router is None and manifest.router_setting("layer") is None
    assert manifest.task("sailing").snapshot == ("cooking", "sailing")
    assert dict(sailing.triggers) == {"keywords": ["boat"]} and sailing.metrics["sum"] == 0.88
    assert manifest.to_dict() == json.loads(text)  # every field kept, for the writer of the next version
    with pytest.raises(KeyError):
        manifest.task("astronomy")


def test_the_typed_manifest_is_frozen_and_its_dict_is_a_copy():
    manifest = Manifest.of(json.loads(FIRST_FORMAT.read_text()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        manifest.version = 3
    with pytest.raises(TypeError):
        manifest.settings["rank"] = 4  # a read-only mapping
    copy = manifest.to_dict()
    copy["tasks"][0]["labels"].append("boiling")
    assert manifest.tasks[0].labels == ("baking", "frying") and manifest.to_dict() != copy
    assert on_disk(manifest)["version"] == 2 and on_disk({"version": 5}) == {"version": 5}


def test_defaults_of_a_generation_entry_and_the_task_it_describes():
    entry = TaskEntry.of({"name": "sum", "kind": "generation", "labels": [], "snapshot": ["sum"], "metric": "rouge_l"})
    assert entry.prompt == GENERATION_PROMPT and entry.max_new_tokens == 32
    assert entry.answer_fields() == {"kind": "generation", "metric": "rouge_l", "max_new_tokens": 32}
    task = task_of(entry)
    assert task.kind == "generation" and task.metric == "rouge_l" and task.prompt == GENERATION_PROMPT
    classify = task_of({"name": "c", "labels": ["a", "b"], "snapshot": ["c"]})  # a manifest's dict, as before
    assert classify.labels == ["a", "b"] and classify.prompt == DEFAULT_PROMPT and classify.test[0].target == "a"


def test_the_next_version_updates_scores_and_router_and_appends_the_entry():
    manifest = Manifest.of(json.loads(FIRST_FORMAT.read_text()))
    new = next_manifest(manifest, {"name": "finance"}, {"cooking": {"sum": 0.5, "routed": 0.6}}, {"margin": 2.0})
    assert new["tasks"][0]["metrics"] == {"learned": 0.95, "sum": 0.5, "routed": 0.6}
    assert new["tasks"][1]["metrics"] == {"learned": 0.9, "sum": 0.88}
    assert new["router"] == {"margin": 2.0} and new["tasks"][-1] == {"name": "finance"}
    assert manifest.tasks[0].metrics["sum"] == 0.95 and len(manifest.tasks) == 2  # the read version is untouched


def test_a_library_written_today_round_trips(library_factory):
    lib = library_factory("bert", "orth")
    raw = read_manifest(lib)
    manifest = load_manifest(lib)
    assert manifest.to_dict() == raw
    assert json.dumps(manifest.to_dict(), sort_keys=True) == json.dumps(raw, sort_keys=True)
    assert manifest.names == [t["name"] for t in raw["tasks"]]
    assert [t.adapter for t in manifest.tasks] == [t["adapter"] for t in raw["tasks"]]
    assert manifest.router_setting("layer") == raw["router"]["layer"] and manifest.modules == raw["modules"]
