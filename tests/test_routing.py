import math

import pytest
import torch

from clora.errors import ConfigError
from clora.routing.lda import TaskStats, posterior_and_confidence, shared_precision, squared_distances, typical_distances
from clora.routing.router import Router, RouterConfig
from clora.routing.triggers import TriggerSet, explicit_task


def test_task_stats_by_hand():
    s = TaskStats.of(torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 3.0]]))
    assert s.count == 3 and torch.allclose(s.mean, torch.tensor([1.0, 1.0], dtype=torch.float64))
    # centred: (-1,-1), (1,-1), (0,2) -> scatter [[2, 0], [0, 6]]
    assert torch.allclose(s.scatter, torch.tensor([[2.0, 0.0], [0.0, 6.0]], dtype=torch.float64))
    back = TaskStats.from_tensors(s.to_tensors())
    assert back.count == 3 and torch.equal(back.scatter, s.scatter)


def test_shared_precision_pools_and_shrinks():
    a = TaskStats(3.0, torch.zeros(2, dtype=torch.float64), torch.tensor([[2.0, 0.0], [0.0, 6.0]], dtype=torch.float64))
    b = TaskStats(3.0, torch.ones(2, dtype=torch.float64), torch.tensor([[2.0, 0.0], [0.0, 2.0]], dtype=torch.float64))
    # pooled: [[4, 0], [0, 8]] / (6 - 2) = diag(1, 2); no shrinkage -> precision diag(1, 0.5)
    assert torch.allclose(shared_precision([a, b], 0.0), torch.diag(torch.tensor([1.0, 0.5], dtype=torch.float64)))
    # shrinkage 0.5 towards (tr/d) I = 1.5 I: diag(1.25, 1.75)
    assert torch.allclose(shared_precision([a, b], 0.5), torch.diag(torch.tensor([1 / 1.25, 1 / 1.75], dtype=torch.float64)))
    # typical D^2: tr(P S_t) / n_t with P = diag(1, .5): a: (2 + 3) / 3, b: (2 + 1) / 3
    assert torch.allclose(typical_distances([a, b], shared_precision([a, b], 0.0)),
                          torch.tensor([5 / 3, 1.0], dtype=torch.float64))


def test_posterior_and_out_of_distribution_damping():
    precision = torch.eye(2, dtype=torch.float64)
    means = torch.tensor([[0.0, 0.0], [4.0, 0.0]], dtype=torch.float64)
    d2 = squared_distances(torch.tensor([[1.0, 0.0], [0.0, 10.0]]), means, precision)
    assert torch.allclose(d2, torch.tensor([[1.0, 9.0], [100.0, 116.0]], dtype=torch.float64))
    typical = torch.tensor([2.0, 2.0], dtype=torch.float64)
    # temperature 1: T = typical = 2, posterior of task 0 = 1 / (1 + exp(-(9 - 1) / (2 * 2)))
    best, conf = posterior_and_confidence(d2, typical, margin=1.0, temperature=1.0)
    assert best.tolist() == [0, 0]
    assert math.isclose(conf[0].item(), 1 / (1 + math.exp(-2)), rel_tol=1e-9)  # inside the margin: posterior
    assert conf[1].item() < 1e-40  # D^2 = 100 against a typical 2: damped to nothing
    # temperature 2: T = 4 -> 1 / (1 + exp(-1)); a warmer posterior is less sure
    _, warm = posterior_and_confidence(d2, typical, margin=1.0, temperature=2.0)
    assert math.isclose(warm[0].item(), 1 / (1 + math.exp(-1)), rel_tol=1e-9)
    # the margin damps by exp(-4 (ratio - 1)): D^2 = 1 against margin 0.25 * typical 2 -> ratio 2
    _, damped = posterior_and_confidence(d2, typical, margin=0.25, temperature=1.0)
    assert math.isclose(damped[0].item(), 1 / (1 + math.exp(-2)) * math.exp(-4), rel_tol=1e-9)


def test_triggers_keywords_regex_prefixes():
    sets = [TriggerSet.compile("billing", {"keywords": ["invoice"], "prefixes": ["[bill]"]}),
            TriggerSet.compile("orders", {"regex": [r"order #\d+"]})]
    assert explicit_task("Where is my INVOICE?", sets) == "billing"
    assert explicit_task("  [BILL] hello", sets) == "billing"
    assert explicit_task("about order #123", sets) == "orders"
    assert explicit_task("invoices are nice", sets) is None  # whole words only
    with pytest.raises(ConfigError, match="bad trigger regex"):
        TriggerSet.compile("x", {"regex": ["("]})
    with pytest.raises(ConfigError, match="unknown trigger kind"):
        TriggerSet.compile("x", {"words": ["a"]})


def test_keyword_trigger_wins_where_the_learned_router_would_not():
    g = torch.Generator().manual_seed(0)
    near_a = torch.randn(200, 3, generator=g, dtype=torch.float64) * 0.3
    near_b = torch.randn(200, 3, generator=g, dtype=torch.float64) * 0.3 + torch.tensor([3.0, 0.0, 0.0], dtype=torch.float64)
    router = Router(["a", "b"], [TaskStats.of(near_a), TaskStats.of(near_b)], [None, {"keywords": ["refund"]}])
    texts = ["please refund me", "something else"]
    features = lambda ts: torch.zeros(len(ts), 3, dtype=torch.float64)  # both look like task a  # noqa: E731
    assert [r.task for r in router.learned(features(texts))] == ["a", "a"]
    routes = router.route(texts, features)
    assert (routes[0].task, routes[0].source, routes[0].confidence) == ("b", "trigger", 1.0)
    assert (routes[1].task, routes[1].source) == ("a", "learned")


def test_low_confidence_falls_back():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 2, generator=g, dtype=torch.float64)
    router = Router(["a", "b"], [TaskStats.of(x), TaskStats.of(x + 0.01)], [None, None], RouterConfig(threshold=0.9))
    route = router.learned(torch.zeros(1, 2))[0]
    assert route.task is None and route.source == "fallback" and route.confidence < 0.9
    with pytest.raises(ConfigError, match="fallback"):
        RouterConfig(fallback="nope")


def test_trigger_arguments_and_stream_validation(tmp_path):
    from clora.errors import DataError
    from clora.routing.triggers import parse_trigger_args
    from clora.data.stream import load_stream

    assert parse_trigger_args(["refund", "regex:^order #\\d+", "prefix:[bill]", "ratio:3"]) == {
        "keywords": ["refund", "ratio:3"], "regex": ["^order #\\d+"], "prefixes": ["[bill]"]}
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks:\n  - {name: a, format: synthetic, triggers: {regex: ['(']}}\n")
    with pytest.raises(DataError, match="bad trigger regex"):
        load_stream(str(bad))


@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama", "t5"])
def test_router_features_stop_at_the_router_layer_and_equal_the_full_pass(kind):
    from clora.testing import make_model, make_tokenizer

    from clora.families.base import n_layers
    from clora.families.early_exit import hidden_states_at, install_exit_hooks, layer_blocks

    model, tok = make_model(kind).eval(), make_tokenizer(kind)
    batch = dict(tok(["red apple near the boat", "blue stone"], padding=True, return_tensors="pt"))
    encoder = model.get_encoder() if kind == "t5" else model
    install_exit_hooks(encoder, n_layers(model.config))
    blocks = layer_blocks(encoder, n_layers(model.config))
    ran = []
    handle = blocks[-1].register_forward_hook(lambda *a: ran.append(1))
    with torch.no_grad():
        early = hidden_states_at(encoder, batch, 1, n_layers(model.config))
        full = encoder(**batch, output_hidden_states=True).hidden_states[1]
    handle.remove()
    assert torch.allclose(early, full, atol=1e-6)
    assert ran == [1]  # the last block ran in the full pass only


def test_library_reads_inputs_as_its_router_statistics_were_taken(library_factory):
    import copy

    from clora.config import ROUTER_TOKENS
    from clora.library.layout import read_manifest
    from clora.library.manifest import Manifest
    from clora.workflows.library_model import open_library_model

    folder = library_factory("bert", "orth")
    manifest = read_manifest(folder)
    assert manifest["router"] == {"layer": 1, "tokens": ROUTER_TOKENS}
    assert open_library_model(folder, progress=False).family.router_tokens == ROUTER_TOKENS
    older = copy.deepcopy(manifest)
    del older["router"]["tokens"]  # a library written before the token cap: its statistics read max_length
    lm = open_library_model(folder, manifest=Manifest.of(older), progress=False)
    assert lm.family.router_tokens == lm.config.max_length == 128


def test_router_layer_outside_the_model_is_a_clear_error(tiny_model_dirs, synthetic_stream):
    from clora.config import RunConfig
    from clora.workflows.run import prepare

    with pytest.raises(ConfigError, match="router layer must be between 1 and 2 for this model, got 3"):
        prepare(RunConfig(stream=str(synthetic_stream), model=str(tiny_model_dirs["bert"]), router_layer=3,
                          progress=False))


def test_pathological_trigger_regexes_are_refused_where_tasks_are_made(library_copy, tmp_path):
    from click.testing import CliRunner
    from conftest import assert_one_line_error, library_state

    from clora.cli.main import cli
    from clora.routing.triggers import TriggerSet

    for pattern in ("(a|aa)+$", "(a+)+$"):
        with pytest.raises(ConfigError, match="backtracks catastrophically"):
            TriggerSet.compile("t", {"regex": [pattern]})
    assert TriggerSet.compile("t", {"regex": ["(a+)+$"]}, strict=False).matches("aaa")  # a library on disk still loads
    slow = TriggerSet.compile("t", {"regex": ["(a+)+$"]}, strict=False)
    assert slow.matches("a" * 9999 + "!") is False  # cut off by the time budget: treated as no match
    stream = tmp_path / "s.yaml"
    stream.write_text("tasks:\n  - {name: a, format: synthetic, triggers: {regex: ['(a|aa)+$']}}\n")
    assert_one_line_error(CliRunner().invoke(cli, ["run", str(stream), "--out", str(tmp_path / "o")]), "backtracks")
    lib = library_copy()
    before = library_state(lib)
    result = CliRunner().invoke(cli, ["library", "import", str(lib), str(tmp_path), "--name", "x", "--labels", "a,b",
                                      "--trigger", "regex:("])
    assert_one_line_error(result, "bad trigger regex '('")
    assert library_state(lib) == before

