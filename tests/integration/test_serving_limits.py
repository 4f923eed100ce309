"""The HTTP server as a deployment sees it: auth, limits, queue, JSON errors, metrics, live reload.

Each test runs a real uvicorn server on loopback in a thread of the test process.
"""

import contextlib
import json
import math
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner
from conftest import assert_one_line_error

from clora.cli.main import cli
from clora.errors import ConfigError
from clora.serving.app import ServeSettings
from clora.serving.guard import Limits, json_depth_exceeds
from clora.serving.inference import Prediction, load_library
from clora.serving.server import listen, make_server


@contextlib.contextmanager
def running(library, settings=ServeSettings(), **options):
    sock = listen("127.0.0.1", 0)
    server = make_server(library, "127.0.0.1", 0, settings, **options)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    port = sock.getsockname()[1]
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline and thread.is_alive()
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def call(port, path, body=None, headers=None, method=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def raw(port, data: bytes, wait: float = 5.0) -> tuple[bytes, float]:
    """Send ``data`` as is and read what comes back (and how long it took) until the server closes or ``wait``."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        chunks = []
        with contextlib.suppress(socket.timeout, ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and b'"error"' in b"".join(chunks):
                    break
    return b"".join(chunks), time.perf_counter() - started


def predict_body(*texts, **extra) -> bytes:
    return json.dumps({"inputs": list(texts), **extra}).encode()


@pytest.fixture(scope="module")
def library(library_factory):
    return load_library(library_factory("bert", "orth"))


def test_an_api_key_guards_every_route_but_health(library):
    settings = ServeSettings(limits=Limits(api_key="s3cret"))
    with running(library, settings) as port:
        assert call(port, "/predict", predict_body("apple oven"))[0] == 401
        status, headers, body = call(port, "/tasks", headers={"Authorization": "Bearer wrong"})
        assert status == 401 and json.loads(body)["error"].startswith("missing or wrong API key")
        assert headers["WWW-Authenticate"] == "Bearer"
        assert call(port, "/metrics")[0] == 401
        assert call(port, "/health")[0] == 200
        assert call(port, "/predict", predict_body("apple oven"), {"Authorization": "Bearer s3cret"})[0] == 200


def test_an_oversized_body_gets_413_without_being_read(library):
    settings = ServeSettings(limits=Limits(max_body_bytes=1000))
    with running(library, settings) as port:
        # announces a terabyte, sends 20 bytes: answered at once, not after reading (or waiting for) the rest
        reply, seconds = raw(port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                   b"Content-Length: 1000000000000\r\n\r\n" + b"x" * 20)
        assert reply.startswith(b"HTTP/1.1 413") and b"request body over 1000 bytes" in reply and seconds < 5
        # a chunked body with no length is counted as it arrives
        chunk = b"x" * 600
        reply, _ = raw(port, b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                             + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2 + b"0\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 413")
        status, _, body = call(port, "/predict", predict_body("a" * 11))
        assert status == 200


def test_a_half_sent_body_times_out_with_408(library):
    settings = ServeSettings(limits=Limits(body_timeout_s=0.5))
    with running(library, settings) as port:
        reply, seconds = raw(port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                   b"Content-Length: 100\r\n\r\n{\"inputs\":")
        assert reply.startswith(b"HTTP/1.1 408") and 0.4 < seconds < 5


def test_half_sent_headers_lose_their_connection(library):
    settings = ServeSettings(limits=Limits(body_timeout_s=0.5))
    with running(library, settings) as port:
        reply, seconds = raw(port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Le")  # never finishes
        assert reply == b"" and 0.4 < seconds < 4  # closed by the server, not by our 5 s wait
        assert call(port, "/health")[0] == 200


def test_oversized_headers_get_431_and_lose_their_connection(library):
    settings = ServeSettings(limits=Limits(max_header_bytes=4096))
    with running(library, settings) as port:
        # 64 MB of headers were accepted before (8 clients added 515 MB of RSS); now cut off past 4 KiB
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 200_000 + b"\r\n\r\n"
        reply, seconds = raw(port, head)
        assert reply.startswith(b"HTTP/1.1 431") and b"request headers over 4096 bytes" in reply and seconds < 4
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]
        long_url, _ = raw(port, b"GET /health?" + b"q" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert long_url.startswith(b"HTTP/1.1 431")
        # a large body is not a large header: headers and body arrive in one read, answered normally
        status, _, _ = call(port, "/predict", predict_body("apple oven " * 800))
        assert status == 200
        for _ in range(3):  # keep-alive: each request's headers are counted from zero
            assert call(port, "/health")[0] == 200


def test_one_client_cannot_take_every_connection_slot(library):
    settings = ServeSettings(limits=Limits(body_timeout_s=30))
    with running(library, settings, max_connections=16, max_client_connections=4) as port:
        hogs = []
        for _ in range(12):  # one client opens sockets and never sends a request
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            hogs.append(sock)
        try:
            time.sleep(0.3)
            refused = []
            for sock in hogs[4:]:
                with contextlib.suppress(socket.timeout, ConnectionResetError):
                    refused.append(sock.recv(4096))
            assert all(r.startswith(b"HTTP/1.1 503") and b"already holds 4 open connections" in r for r in refused)
            assert len(refused) == 8
            # another client address (127.0.0.2 is loopback too) is answered at once
            other = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.0.2", 0))
            with other:
                other.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert other.recv(4096).startswith(b"HTTP/1.1 200")
        finally:
            for sock in hogs:
                sock.close()
        time.sleep(0.3)
        assert call(port, "/health")[0] == 200  # the hog's slots came back when it left


def test_the_admin_key_is_its_own_secret(library):
    for limits, fragment in [({"admin_key": ""}, "admin key is empty"),
                             ({"api_key": "k", "admin_key": "k"}, "must differ from the API key"),
                             ({"max_header_bytes": 10}, "at least 1024 bytes")]:
        with pytest.raises(ConfigError, match=fragment):
            Limits(**limits)
    settings = ServeSettings(limits=Limits(api_key="s3cret", admin_key="adm1n"))
    with running(library, settings) as port:  # the admin key opens every route, as the API key does
        assert call(port, "/tasks", headers={"Authorization": "Bearer adm1n"})[0] == 200
        assert call(port, "/tasks", headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert call(port, "/tasks", headers={"Authorization": "Bearer nope"})[0] == 401


def test_bad_requests_are_json_400s_not_html(library):
    settings = ServeSettings(max_inputs=3, max_input_chars=50)
    with running(library, settings) as port:
        for body, fragment in [(b"[" * 100_000, "nested deeper than 32"), (b"{not json", "JSON"),
                               (b'{"inputs": []}', "inputs"), (predict_body("a", mode="x"), "mode"),
                               (predict_body("a", task="nope"), "no task 'nope'"),
                               (predict_body("a", "b", "c", "d"), "at most 3 inputs"),
                               (predict_body("x" * 51), "has 51 characters (at most 50)"),
                               (predict_body("a", task=["t0"] * 2), "2 task names for 1 inputs")]:
            status, headers, reply = call(port, "/predict", body)
            assert status == 400 and headers["Content-Type"] == "application/json", (body[:30], status)
            assert fragment in json.loads(reply)["error"], (fragment, reply)
        status, _, reply = call(port, "/nowhere")
        assert status == 404 and "error" in json.loads(reply)
        assert call(port, "/predict", method="GET")[0] == 405


def test_a_lone_surrogate_is_a_json_400_on_every_route_that_reads_text(library):
    """Issue 38, finding 7: ``"\\ud800"`` is valid JSON but no Unicode text; it was a plain-text 500 with a
    traceback. Now each route names the input and the other inputs of the server are not disturbed."""
    bad = b'"a note \\ud800"'
    with running(library) as port:
        for route, body in [("/predict", b'{"inputs": ["fine", ' + bad + b']}'),
                            ("/v1/completions", b'{"model": "auto", "prompt": ' + bad + b'}'),
                            ("/v1/chat/completions",
                             b'{"model": "auto", "messages": [{"role": "user", "content": ' + bad + b'}]}')]:
            status, headers, reply = call(port, route, body)
            assert status == 400 and headers["Content-Type"] == "application/json", (route, status, reply[:200])
            assert "not valid Unicode" in reply.decode(), (route, reply[:200])
        assert call(port, "/predict", predict_body("fine"))[0] == 200


def test_the_json_depth_check_skips_strings():
    assert json_depth_exceeds(b"[[[1]]]", 2) and not json_depth_exceeds(b"[[[1]]]", 3)
    assert not json_depth_exceeds(b'{"a": "[[[[[[[[\\"[[["}', 1)


class _Blocking:
    """A stand-in library whose answering waits for ``release``: the queue can be filled deterministically."""

    version, reload_error, loading = 1, None, None

    def __init__(self):
        self.release, self.entered = threading.Event(), threading.Event()

    def tasks(self):
        return []

    def newer_on_disk(self):
        return False

    def search_triggers(self, queries):
        return queries

    def predict_queries(self, queries):
        self.entered.set()
        self.release.wait(timeout=30)
        return [Prediction(q.text, "t", 1.0, "x", "given") for q in queries]


def test_a_full_queue_answers_503():
    fake = _Blocking()
    with running(fake, ServeSettings(max_batch=1, max_queue=1, batch_wait_ms=0)) as port:
        results = {}
        first = threading.Thread(target=lambda: results.update(first=call(port, "/predict", predict_body("a"))))
        first.start()
        assert fake.entered.wait(timeout=30)  # the first request is being answered
        second = threading.Thread(target=lambda: results.update(second=call(port, "/predict", predict_body("b"))))
        second.start()
        deadline = time.time() + 10
        while json.loads(call(port, "/health")[2])["queue"] < 1:  # the second waits in the queue
            assert time.time() < deadline
            time.sleep(0.02)
        status, headers, body = call(port, "/predict", predict_body("c"))
        assert status == 503 and headers["Retry-After"] == "1" and "queue holds 1" in json.loads(body)["error"]
        fake.release.set()
        first.join(30)
        second.join(30)
        assert results["first"][0] == 200 and results["second"][0] == 200


def test_nan_router_statistics_never_reach_the_json(library_factory):
    loaded = load_library(library_factory("bert", "orth"))
    texts = ["apple oven the recipe", "river boat"]
    assert all(math.isfinite(a.confidence) for a in loaded.predict(texts))
    loaded.current.router.means.fill_(float("nan"))  # broken statistics, as a bad file would give
    answers = loaded.predict(texts)
    assert all(a.confidence == 0.0 and a.source == "fallback" for a in answers)
    json.dumps([a.to_dict() for a in answers], allow_nan=False)  # valid JSON


def test_a_new_version_that_fails_to_load_is_retried_with_backoff(library_copy, monkeypatch):
    from clora.library.layout import MANIFEST

    lib = library_copy()
    loaded = load_library(lib)
    broken = json.loads((lib / MANIFEST).read_text())
    broken["version"] = 7
    broken["files"] = {rel: "0" * 64 for rel in broken["files"]}  # every checksum wrong: version 7 cannot load
    (lib / MANIFEST).write_text(json.dumps(broken))
    loads = []
    real_load = loaded._load
    monkeypatch.setattr(loaded, "_load", lambda: loads.append(1) or real_load())
    clock = [1000.0]
    monkeypatch.setattr("clora.serving.inference.time.monotonic", lambda: clock[0])
    assert loaded.refresh() is False and len(loads) == 1 and loaded.version == 1
    assert "version 7 failed to load" in loaded.reload_error and "still serving version 1" in loaded.reload_error
    for _ in range(5):  # within the backoff: no new attempt, however often asked
        assert loaded.refresh() is False
    assert len(loads) == 1
    clock[0] += 1.1  # first wait: 1 s
    loaded.refresh()
    assert len(loads) == 2
    clock[0] += 1.1  # second wait: 2 s, not yet over
    loaded.refresh()
    assert len(loads) == 2
    clock[0] += 1.0
    loaded.refresh()
    assert len(loads) == 3
    assert loaded.predict(["apple oven"])[0].task in ("t0", "t1")  # still answering with version 1


def test_health_reports_a_failing_version(library_copy):
    from clora.library.layout import MANIFEST

    lib = library_copy()
    loaded = load_library(lib)
    with running(loaded) as port:
        broken = json.loads((lib / MANIFEST).read_text())
        broken["version"], broken["files"] = 9, {rel: "0" * 64 for rel in broken["files"]}
        (lib / MANIFEST).write_text(json.dumps(broken))
        status, _, body = call(port, "/tasks")
        assert status == 200 and json.loads(body)["version"] == 1
        health = json.loads(call(port, "/health")[2])
        assert health["status"] == "degraded" and "version 9 failed to load" in health["reload_error"]


def test_metrics_count_requests_batches_and_routes(library):
    with running(library) as port:
        for _ in range(3):
            assert call(port, "/predict", predict_body("apple oven the recipe", "river boat"))[0] == 200
        call(port, "/predict", b"{bad")
        status, headers, body = call(port, "/metrics")
        text = body.decode()
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert 'clora_requests_total{route="/predict",status="200"} 3.0' in text
        assert 'clora_requests_total{route="/predict",status="400"} 1.0' in text
        assert "clora_batch_inputs_count 3.0" in text and "clora_library_version 1.0" in text
        assert 'clora_routed_inputs_total{source=' in text and "clora_request_seconds_bucket" in text


@pytest.mark.parametrize("port", ["99999", "-1", "70000"])
def test_a_port_outside_the_range_is_one_line_before_the_model_loads(port, library_factory):
    result = CliRunner().invoke(cli, ["serve", str(library_factory("bert", "orth")), "--port", port])
    assert_one_line_error(result, "port must be in 1-65535")


def test_a_new_version_reuses_the_loaded_base_model(library_copy, new_task_files, monkeypatch):
    import clora.workflows.library_model as library_model

    lib = library_copy()
    loaded = load_library(lib)
    before = loaded.current.lm.base_model.model
    texts = ["apple oven the recipe", "river boat very mast", "stone bank loan"]
    old_answers = loaded.predict(texts)
    added = CliRunner().invoke(cli, ["add-task", str(lib), "--name", "t2", "--train", str(new_task_files[0]), "--quiet"])
    assert added.exit_code == 0, added.output
    loads = []
    monkeypatch.setattr(library_model, "load_base_model", lambda *a, **k: loads.append(1))  # must not be needed
    assert loaded.refresh() and loaded.version == 2 and loads == []
    after = loaded.current.lm.base_model.model
    assert after is not before  # the old version is untouched for calls still running on it
    shared = {p.data_ptr() for p in before.parameters()}
    assert all(p.data_ptr() in shared for n, p in after.named_parameters() if ".adapters." not in n)
    monkeypatch.undo()
    fresh = load_library(lib)  # loaded from scratch
    assert loaded.predict(texts) == fresh.predict(texts)
    assert [t["name"] for t in loaded.tasks()] == ["t0", "t1", "t2"]
    assert len(loaded.current.lm.lora) == 3 and len(before.encoder.layer[0].attention.self.query.adapters) == 2
    assert old_answers and fresh.version == 2


@pytest.mark.parametrize("command", ["predict", "serve"])
def test_a_gpu_asked_for_on_a_machine_without_one_is_one_line(command, library_factory):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    args = [command, str(library_factory("bert", "orth")), "--device", "cuda"] + (["x"] if command == "predict" else [])
    assert_one_line_error(CliRunner().invoke(cli, args), "no CUDA GPU is available (use the device cpu or auto) (--device)")


def test_triggers_searched_ahead_are_used_only_by_their_own_version(library_copy):
    from dataclasses import replace

    from clora.library.layout import MANIFEST
    from clora.serving.inference import Query

    lib = library_copy()
    manifest = json.loads((lib / MANIFEST).read_text())
    manifest["tasks"][1]["triggers"] = {"keywords": ["refund"]}  # metadata, not checksummed
    (lib / MANIFEST).write_text(json.dumps(manifest))
    loaded = load_library(lib)
    searched = loaded.search_triggers([Query("a refund please"), Query("apple oven")])
    assert [q.trigger for q in searched] == [(1, "t1"), (1, None)]
    answer = loaded.predict_queries(searched)[0]
    assert (answer.task, answer.source) == ("t1", "trigger")
    stale = [replace(q, trigger=(99, "t0")) for q in searched]  # searched in another version: searched again
    assert loaded.predict_queries(stale) == loaded.predict_queries(searched)


def test_device_and_precision_reach_every_tensor_of_a_served_library(library_factory):
    """The path `--device cuda` takes, run with the devices this machine has: the resolved device and
    the base model's dtype reach every parameter, adapters stay float32, and the answers match fp32's."""
    import torch

    lib = library_factory("bert", "orth")
    texts = ["apple oven", "stock price"]
    reference = load_library(lib, device="cpu").predict(texts)
    loaded = load_library(lib, device="auto", precision="bf16")
    assert loaded.device == ("cuda:0" if torch.cuda.is_available() else "cpu")
    model = loaded.current.lm.base_model.model
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        assert tensor.device.type == loaded.device.split(":")[0], name
        if ".adapters." in name:
            assert tensor.dtype == torch.float32, name
        elif tensor.is_floating_point() and "embeddings" not in name:
            assert tensor.dtype == torch.bfloat16, name
    answers = loaded.predict(texts)
    assert [(a.task, a.source) for a in answers] == [(a.task, a.source) for a in reference]
    result = CliRunner().invoke(cli, ["predict", str(lib), "--device", "auto", "--precision", "bf16", *texts])
    assert result.exit_code == 0, result.output


def test_health_names_the_version_being_loaded(library_copy, monkeypatch):
    from clora.library.layout import MANIFEST

    lib = library_copy()
    loaded = load_library(lib)
    release, started = threading.Event(), threading.Event()
    real_load = loaded._load
    monkeypatch.setattr(loaded, "_load", lambda: (started.set(), release.wait(30), real_load())[2])
    with running(loaded) as port:
        manifest = json.loads((lib / MANIFEST).read_text())
        manifest["version"] = 2  # same files, valid checksums: version 2 loads
        (lib / MANIFEST).write_text(json.dumps(manifest))
        waiting = threading.Thread(target=call, args=(port, "/tasks"))
        waiting.start()  # this request notices version 2 and waits for it
        assert started.wait(30)
        health = json.loads(call(port, "/health")[2])
        assert health["version"] == 1 and health["loading"] == 2 and health["status"] == "ok"
        release.set()
        waiting.join(30)
        health = json.loads(call(port, "/health")[2])
        assert health["version"] == 2 and "loading" not in health


def test_slow_feedback_never_holds_the_workers_predict_needs(library):
    """Feedback runs on its own thread: 100 feedback posts stuck behind a slow disk leave /predict answering
    at once. Before, feedback ran on the worker threads that /predict's trigger search needs (40 of them),
    and evaluation feedback was rewritten whole there: one /predict waited 70.6 s."""
    release = threading.Event()

    def stuck_feedback(body, labels_of, admin=False):
        release.wait(10)  # a disk that does not answer
        return {"kept_as": "inbox"}

    settings = ServeSettings(feedback=stuck_feedback)
    with running(library, settings, max_connections=512, max_client_connections=512) as port:
        body = json.dumps({"input": "x", "label": "a"}).encode()
        posts = [threading.Thread(target=call, args=(port, "/feedback", body)) for _ in range(100)]
        for thread in posts:
            thread.start()
        time.sleep(0.5)
        started = time.perf_counter()
        status, _, _ = call(port, "/predict", predict_body("apple oven"))
        waited = time.perf_counter() - started
        release.set()
        for thread in posts:
            thread.join(timeout=60)
    assert status == 200 and waited < 2, waited  # behind the stuck posts it would wait their 10 s
