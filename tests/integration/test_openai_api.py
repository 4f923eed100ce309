"""The OpenAI-compatible API of ``clora serve``, driven by the official ``openai`` client against real server
processes: models, completions and chat (plain and streamed) answer as ``/predict`` does, the limits, key,
batching and metrics hold, and the gateway forwards to an upstream (and fails fast when it cannot)."""

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import post_json

openai = pytest.importorskip("openai")

from clora.data.synthetic import synthetic_examples  # noqa: E402

TEXTS = [e.text for d in ("cooking", "sailing") for e in synthetic_examples(d, {"domain": d, "n_train": 1,
                                                                                "n_test": 4})[1]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(library, *options, env_extra=None):
    """``clora serve LIBRARY OPTIONS`` in a process of its own; yields its port once /health answers."""
    port = _free_port()
    env = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": "", "TOKENIZERS_PARALLELISM": "false",
           **(env_extra or {})}
    server = subprocess.Popen([sys.executable, "-m", "clora.cli.main", "serve", str(library), "--port", str(port),
                               *map(str, options)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
                    if json.loads(r.read())["status"] == "ok":
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert server.poll() is None, server.stderr.read()
            assert time.time() < deadline, "the server did not start"
            time.sleep(0.3)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def _client(port, key="none"):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=60)


def _predict(port, texts, **extra):
    status, body = post_json(port, "/predict", {"inputs": texts, **extra})
    assert status == 200, body
    return body["predictions"]


@pytest.fixture(scope="module")
def generation_library(tiny_model_dirs, tmp_path_factory):
    from clora.config import RunConfig
    from clora.workflows.run import run_stream

    root = tmp_path_factory.mktemp("gen")
    stream = root / "g.yaml"
    stream.write_text("tasks:\n" + "".join(
        f"  - {{name: t{i}, format: synthetic, kind: generation, metric: exact_match, max_new_tokens: 4, "
        f"instruction: Which colour, options: {{domain: {d}, shift: {i}, answer: phrase, n_train: 24, n_test: 8}}}}\n"
        for i, d in enumerate(["cooking", "sailing"])))
    run_stream(RunConfig(stream=str(stream), out=root / "run", model=str(tiny_model_dirs["llama"]), rank=2,
                         epochs=1, progress=False))
    return root / "run" / "library"


def _check_answers_match_predict(port, tasks):
    client = _client(port)
    assert [m.id for m in client.models.list().data] == ["auto", *tasks]
    expected = _predict(port, TEXTS)
    for text, row in zip(TEXTS, expected):
        completion = client.completions.create(model="auto", prompt=text)
        assert completion.choices[0].text == row["prediction"]
        assert completion.model_extra["clora"]["routes"][0]["task"] == row["task"]
        chat = client.chat.completions.create(model="auto", messages=[
            {"role": "system", "content": "be brief"}, {"role": "user", "content": text}])
        assert chat.choices[0].message.content == row["prediction"]
        streamed = "".join(c.choices[0].text for c in client.completions.create(model="auto", prompt=text,
                                                                                 stream=True) if c.choices)
        assert streamed == row["prediction"]
        chunks = list(client.chat.completions.create(model="auto", messages=[{"role": "user", "content": text}],
                                                     stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == row["prediction"]
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    # a task named as the model answers in its snapshot, as /predict with mode oracle
    given = _predict(port, TEXTS[:2], mode="oracle", task=tasks[1])
    answer = client.completions.create(model=tasks[1], prompt=TEXTS[:2], n=2)
    assert [c.text for c in answer.choices] == [given[0]["prediction"]] * 2 + [given[1]["prediction"]] * 2


def test_the_openai_client_gets_what_predict_answers(library_copy):
    lib = library_copy()
    with served(lib) as port:
        _check_answers_match_predict(port, ["t0", "t1"])
        raw = urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/completions", data=json.dumps({"model": "auto", "prompt": TEXTS[0]}).encode(),
            headers={"Content-Type": "application/json"}), timeout=60)
        assert raw.headers["X-Clora-Task"] in ("t0", "t1") and raw.headers["X-Clora-Source"]
        status, decision = post_json(port, "/v1/route", {"input": TEXTS[:3]})
        assert status == 200 and [r["task"] for r in decision["routes"]] == [
            p["task"] if p["source"] != "fallback" else None for p in _predict(port, TEXTS[:3])]


def test_generation_libraries_answer_through_the_openai_api(generation_library):
    with served(generation_library) as port:
        _check_answers_match_predict(port, ["t0", "t1"])
        client = _client(port)
        full = client.completions.create(model="t0", prompt=TEXTS[0]).choices[0]
        cut = client.completions.create(model="t0", prompt=TEXTS[0], max_tokens=1).choices[0]
        assert full.text.startswith(cut.text) and cut.finish_reason == "length" and len(cut.text) < len(full.text)
        word = full.text.split()[-1]
        stopped = client.completions.create(model="t0", prompt=TEXTS[0], stop=[word]).choices[0]
        assert stopped.text == full.text[:full.text.find(word)]


@pytest.fixture(scope="module")
def keyed_server(library_factory):
    """One server with a key and tight limits for the tests below (serving writes nothing to the library)."""
    with served(library_factory("bert", "orth"), "--api-key", "sekrit", "--max-input-chars", "200",
                "--max-body-bytes", "4096", "--max-inputs", "4") as port:
        yield port


def _metrics(port) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer sekrit"})
    return urllib.request.urlopen(request, timeout=30).read().decode()


def test_openai_endpoints_keep_the_api_key(keyed_server):
    with pytest.raises(openai.AuthenticationError) as refused:
        _client(keyed_server, "wrong").models.list()
    assert refused.value.body["type"] == "authentication_error"
    assert [m.id for m in _client(keyed_server, "sekrit").models.list().data] == ["auto", "t0", "t1"]


def test_openai_endpoints_keep_the_limits_and_say_which_field(keyed_server):
    client = _client(keyed_server, "sekrit")
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="nope", prompt="x")
    assert missing.value.body["code"] == "model_not_found" and missing.value.body["param"] == "model"
    for bad, param in ((dict(prompt="x" * 300), "prompt"), (dict(prompt="x", logprobs=2), "logprobs"),
                       (dict(prompt="x", echo=True), "echo"), (dict(prompt=["x"] * 3, n=2), "n")):
        with pytest.raises(openai.BadRequestError) as refused:
            client.completions.create(model="auto", **bad)
        assert refused.value.body["param"] == param, refused.value.body
    with pytest.raises(openai.APIStatusError) as big:
        client.completions.create(model="auto", prompt=["y" * 150] * 30)
    assert big.value.status_code == 413 and "request body over 4096 bytes" in big.value.body["message"]
    with pytest.raises(openai.BadRequestError) as empty:
        client.chat.completions.create(model="auto", messages=[{"role": "system", "content": "hi"}])
    assert empty.value.body["param"] == "messages"


def test_openai_requests_share_micro_batches(keyed_server):
    def batches():
        lines = [line.split() for line in _metrics(keyed_server).splitlines()
                 if line.startswith(("clora_batch_inputs_sum", "clora_batch_inputs_count"))]
        return {name: float(value) for name, value in lines}

    client = _client(keyed_server, "sekrit")
    before = batches()
    with ThreadPoolExecutor(max_workers=8) as pool:
        texts = list(pool.map(lambda t: client.completions.create(model="auto", prompt=t).choices[0].text, TEXTS * 3))
    after = batches()
    inputs = after["clora_batch_inputs_sum"] - before["clora_batch_inputs_sum"]
    passes = after["clora_batch_inputs_count"] - before["clora_batch_inputs_count"]
    assert len(texts) == 24 and inputs == 24 and passes < 24  # some forward passes answered several requests


def test_openai_endpoints_are_counted_in_the_metrics(keyed_server):
    client = _client(keyed_server, "sekrit")
    client.chat.completions.create(model="t0", messages=[{"role": "user", "content": TEXTS[0]}])
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="auto", prompt="x", echo=True)
    with pytest.raises(openai.AuthenticationError):
        _client(keyed_server, "wrong").models.list()
    metrics = _metrics(keyed_server)
    assert 'clora_requests_total{route="/v1/chat/completions",status="200"}' in metrics
    assert 'route="/v1/completions",status="400"' in metrics and 'route="/v1/models",status="401"' in metrics
    assert 'clora_routed_inputs_total{source="given"}' in metrics


def test_the_gateway_forwards_to_an_upstream_with_the_routed_task(library_copy):
    lib = library_copy()
    with served(lib) as upstream, served(lib, "--upstream", f"http://127.0.0.1:{upstream}/v1") as gateway:
        direct, through = _client(upstream), _client(gateway)
        for text in TEXTS:
            routed = through.completions.create(model="auto", prompt=text)
            route = routed.model_extra["clora"]["routes"][0]
            if route["task"] is None:
                continue  # a fallback input goes to the fallback model, which this upstream does not serve
            alone = direct.completions.create(model=route["task"], prompt=text)
            assert routed.choices[0].text == alone.choices[0].text and routed.model == route["task"]
            chat = "".join(c.choices[0].delta.content or "" for c in through.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": text}], stream=True) if c.choices)
            assert chat == alone.choices[0].text


def test_the_gateway_says_502_for_a_down_upstream_and_504_for_a_slow_one(library_copy):
    lib = library_copy()
    down = _free_port()
    silent = socket.socket()  # accepts connections and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    held = []
    stop = threading.Event()

    def hold():
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        with served(lib, "--upstream", f"http://127.0.0.1:{down}", "--upstream-fallback", "t0") as port:
            started = time.time()
            status, body = post_json(port, "/v1/completions", {"model": "t0", "prompt": "x"})
            assert status == 502 and body["error"]["code"] == "upstream_unreachable", body
            assert time.time() - started < 10
        slow = silent.getsockname()[1]
        with served(lib, "--upstream", f"http://127.0.0.1:{slow}", "--upstream-timeout", "1") as port:
            started = time.time()
            status, body = post_json(port, "/v1/chat/completions",
                                     {"model": "t1", "messages": [{"role": "user", "content": "x"}]})
            assert status == 504 and body["error"]["code"] == "upstream_timeout", body
            assert time.time() - started < 10
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        silent.close()
