"""Trust boundaries (issue 38): what a library or a request names must never run code or brick anything."""

import json
import shutil

from click.testing import CliRunner
from conftest import assert_one_line_error

from clora.cli.main import cli
from clora.library.layout import read_manifest


def test_a_base_model_folder_that_asks_to_run_its_own_code_is_refused(library_copy, tiny_model_dirs, tmp_path,
                                                                     monkeypatch):
    """A manifest naming a folder with ``auto_map`` is one line: transformers never asks "run the custom code?"
    and the folder's code never runs, whatever the user would answer."""
    evil = tmp_path / "evil-model"
    shutil.copytree(tiny_model_dirs["bert"], evil)
    config = json.loads((evil / "config.json").read_text())
    config["model_type"] = "evil-net"  # a type transformers does not know: only the folder's code could load it
    config["auto_map"] = {"AutoConfig": "evil.Config", "AutoModel": "evil.Model"}
    (evil / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "ran"
    (evil / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    lib = library_copy()
    manifest = json.loads((lib / "manifest.json").read_text())
    manifest["base_model"] = str(evil)
    (lib / "manifest.json").write_text(json.dumps(manifest))
    read_manifest(lib)  # still a readable library: only its base model is foreign
    asked = []
    monkeypatch.setattr("builtins.input", lambda *a: asked.append(a) or "y")  # a user who would say yes
    result = CliRunner().invoke(cli, ["predict", str(lib), "apple oven"])
    assert_one_line_error(result, "asks to run its own code ('auto_map' in config.json)")
    assert not marker.exists() and asked == []
    result = CliRunner().invoke(cli, ["run", "demo", "--model", str(evil), "--out", str(tmp_path / "run")])
    assert_one_line_error(result, "asks to run its own code")
    assert not marker.exists() and not (tmp_path / "run").exists() and asked == []
