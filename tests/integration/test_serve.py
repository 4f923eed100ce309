"""``clora predict`` and ``clora serve`` end to end on a tiny library."""

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from click.testing import CliRunner
from conftest import assert_one_line_error, post_json

from clora.cli.main import cli
from clora.serving.inference import load_library
from clora.data.synthetic import synthetic_examples

TEXTS = [e.text for d in ("cooking", "sailing") for e in synthetic_examples(d, {"domain": d, "n_train": 1,
                                                                                "n_test": 10})[1]]


def _post(port, body: bytes):
    return post_json(port, "/predict", body, timeout=60)


def _get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as response:
        return json.loads(response.read())


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_predict_prints_one_json_line_per_input(library_copy, tmp_path):
    lib = library_copy()
    inputs = tmp_path / "in.txt"
    inputs.write_text(TEXTS[0] + "\n" + json.dumps({"input": TEXTS[12]}) + "\n")
    result = CliRunner().invoke(cli, ["predict", str(lib), TEXTS[1], "--input", str(inputs)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]  # stdout: JSON lines only
    assert [r["input"] for r in rows] == [TEXTS[1], TEXTS[0], TEXTS[12]]
    assert result.stderr.startswith("routing: ") and "of 3 routed" in result.stderr
    assert all(set(r) >= {"input", "task", "confidence", "prediction"} for r in rows)
    given = CliRunner().invoke(cli, ["predict", str(lib), TEXTS[1], "--mode", "oracle", "--task", "t1"])
    assert json.loads(given.output)["task"] == "t1" and json.loads(given.output)["confidence"] == 1.0
    assert_one_line_error(CliRunner().invoke(cli, ["predict", str(lib), "x", "--mode", "oracle"]), "needs a task")
    assert_one_line_error(CliRunner().invoke(cli, ["predict", str(lib), "x", "--task", "nope"]), "no task 'nope'")


def test_serve_answers_concurrently_rejects_bad_json_and_picks_up_new_tasks(library_copy, new_task_files):
    lib = library_copy()
    expected = load_library(lib).predict(TEXTS * 10)  # in-process answers, 200 of them
    port = _free_port()
    env = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": "", "TOKENIZERS_PARALLELISM": "false"}
    server = subprocess.Popen([sys.executable, "-m", "clora.cli.main", "serve", str(lib), "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                assert _get(port, "/health")["status"] == "ok"
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.time() < deadline and server.poll() is None, server.stderr.read() if server.poll() else ""
                time.sleep(0.3)
        bodies = [json.dumps({"inputs": [row["input"]]}).encode() for row in expected]
        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(lambda body: _post(port, body), bodies))
        assert all(status == 200 for status, _ in answers)
        got = [(a["predictions"][0]["task"], a["predictions"][0]["prediction"]) for _, a in answers]
        assert got == [(row["task"], row["prediction"]) for row in expected]  # 200 right answers
        for bad in (b"{not json", b"[1, 2]", b'{"inputs": []}', b'{"inputs": ["a"], "mode": "x"}',
                    b'{"inputs": ["a"], "task": "nope"}'):
            status, body = _post(port, bad)
            assert status == 400 and "error" in body, (bad, status, body)
        assert [t["name"] for t in _get(port, "/tasks")["tasks"]] == ["t0", "t1"]
        added = CliRunner().invoke(cli, ["add-task", str(lib), "--name", "t2", "--train", str(new_task_files[0]),
                                         "--quiet"])
        assert added.exit_code == 0, added.output
        assert [t["name"] for t in _get(port, "/tasks")["tasks"]] == ["t0", "t1", "t2"]
        status, body = _post(port, json.dumps({"inputs": [TEXTS[0]], "task": "t2"}).encode())
        assert status == 200 and body["predictions"][0]["task"] == "t2" and body["version"] == 2
        assert server.poll() is None  # never restarted
    finally:
        server.terminate()
        server.wait(timeout=30)
