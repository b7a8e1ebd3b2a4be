"""The benchmark command runs end to end on tiny sizes and writes well-formed JSON (no timing assertions)."""
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest
import torch

import minidl
import minidl.bench as bench
from minidl import backend
from minidl.bench.machine import cpp_error

from conftest import require_cpp, subprocess_env

REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = subprocess_env(MINIDL_BACKEND="auto")


def run_bench(*args, cwd=None):
    """Run python -m minidl.bench (this process's minidl) in a subprocess."""
    return subprocess.run([sys.executable, "-m", "minidl.bench", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Run the benchmark once with tiny sizes at 1 and 2 threads; its JSON and stdout."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = run_bench("--smoke", "--threads", "1,2", "--json", str(out), cwd=out.parent)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc.stdout


def expected_variants():
    """cpp is compared only where the extension loads; CI (MINIDL_REQUIRE_EXT=1) requires it."""
    if os.environ.get("MINIDL_REQUIRE_EXT") == "1":
        assert backend.cpp_available(), cpp_error()
    return {"python", "torch"} | ({"cpp"} if backend.cpp_available() else set())


def test_header_and_tables_printed(smoke):
    _, stdout = smoke
    assert stdout.startswith("# minidl benchmark")
    for title in ("### ceilings", "### ops", "### train", "### mlp"):
        assert title in stdout
    assert "× vs torch" in stdout and "% GEMM peak" in stdout and "% copy BW" in stdout


def test_json_structure(smoke):
    data, _ = smoke
    assert {"machine", "config", "results", "loss_checks", "elapsed_s"} <= set(data)
    assert data["machine"]["cpp_available"] == backend.cpp_available()
    assert data["config"]["threads"] == [1, 2]
    sections = {r["section"] for r in data["results"]}
    assert sections == {"ceilings", "ops", "layers", "conv", "train", "mlp"} | ({"calls"} if backend.cpp_available() else set())
    for r in data["results"]:
        assert r["threads"] in (1, 2) and r["device"] == "cpu"
        assert len(r["repeats_s"]) == data["config"]["repeats"]
        assert all(t > 0 for t in r["repeats_s"]) and r["median_s"] > 0 and r["inner"] >= 1


def test_every_variant_timed_with_a_speedup(smoke):
    data, _ = smoke
    for section in ("ops", "train", "mlp"):
        recs = [r for r in data["results"] if r["section"] == section]
        cases = {(r["case"], r["threads"]) for r in recs}
        for case in cases:
            variants = {r["variant"]: r for r in recs if (r["case"], r["threads"]) == case}
            extra = set()
            if section == "mlp":
                extra = {"matmuls alone"} | ({"cpp fwd+bwd"} if backend.cpp_available() else set())
            assert set(variants) == expected_variants() | extra, case
            assert variants["torch"]["x_vs_torch"] == pytest.approx(1.0)
            assert all(r["x_vs_torch"] > 0 for r in variants.values())


def test_calls_compare_torch_ops_with_direct(smoke):
    data, stdout = smoke
    require_cpp()
    recs = [r for r in data["results"] if r["section"] == "calls"]
    assert {r["case"].split()[0] for r in recs} == {"relu_forward", "mlp_forward", "sgd_step_"}
    for case in {(r["case"], r["threads"]) for r in recs}:
        variants = {r["variant"]: r for r in recs if (r["case"], r["threads"]) == case}
        assert set(variants) == {"torch.ops", "direct"}, case
        assert variants["torch.ops"]["x_vs_torch"] == pytest.approx(1.0) and variants["direct"]["x_vs_torch"] > 0
    assert "### calls" in stdout and "× vs torch.ops" in stdout


def test_ceilings_and_throughputs(smoke):
    data, _ = smoke
    ceilings = [r for r in data["results"] if r["section"] == "ceilings"]
    assert sorted("gflops" in r for r in ceilings) == [False, False, True, True]  # gemm and copy, 2 thread counts
    assert all(r.get("gflops", r.get("gbs", 0)) > 0 for r in ceilings)
    for r in data["results"]:
        if r["section"] == "ops" and r["op"] == "linear" or r["section"] in ("train", "mlp"):
            assert r["gflops"] > 0 and r["pct_gemm_peak"] > 0
        elif r["section"] == "ops":
            assert r["gelems"] > 0 and r["gbs"] > 0 and r["pct_copy_bw"] > 0


def test_training_losses_agree(smoke):
    data, stdout = smoke
    checks = data["loss_checks"]
    assert {c["case"] for c in checks} == {"disk b1", "disk b100", "mlp b8", "convnet b4", "siamese_aux b4"}
    for c in checks:
        assert c["ok"] and set(c["losses"]) == expected_variants()
        assert all(len(ls) == c["steps"] for ls in c["losses"].values())
    assert stdout.count("loss check") == len(checks) and "MISMATCH" not in stdout


def test_sections_option_in_process(tmp_path, capsys):
    out = tmp_path / "b.json"
    threads, backend_name = torch.get_num_threads(), minidl.get_backend()
    assert bench.main(["--smoke", "--sections", "train", "--json", str(out)]) == 0
    assert (torch.get_num_threads(), minidl.get_backend()) == (threads, backend_name)  # restored
    data = json.loads(out.read_text())
    assert {r["section"] for r in data["results"]} == {"train"}
    # Without the ceilings section, the percentages still come from the GEMM timed alongside.
    assert all(r["pct_gemm_peak"] > 0 and r["ceiling_median_s"] > 0 for r in data["results"])
    assert "ceiling" not in {r["variant"] for r in data["results"]}  # the ceiling is not a row of its own
    assert "### train" in capsys.readouterr().out


def test_layers_section_rows(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert bench.main(["--smoke", "--sections", "layers", "--json", str(out)]) == 0
    recs = json.loads(out.read_text())["results"]
    assert {r["section"] for r in recs} == {"layers"} and not [r for r in recs if "skipped" in r]
    cases = {r["case"].split()[0] for r in recs}
    assert cases == {"conv", "max-pool", "batch", "dropout", "cross-entropy", "softmax", "Adam"}
    for case in {r["case"] for r in recs}:
        variants = {r["variant"]: r for r in recs if r["case"] == case}
        torch_variants = {v for v in variants if v.startswith("torch")}
        assert set(variants) - torch_variants == expected_variants() - {"torch"}, case
        best = variants[next(iter(variants.values()))["reference"]]
        assert best["x_vs_torch"] == pytest.approx(1.0) and best["median_s"] == min(
            variants[v]["median_s"] for v in torch_variants)
        if case.startswith(("conv", "max-pool", "batch")):
            assert torch_variants == {"torch nchw", "torch cl"} and variants["python"]["layout"] == "cl"
    assert "### layers" in capsys.readouterr().out


def test_conv_section_rows(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert bench.main(["--smoke", "--sections", "conv", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    recs = data["results"]
    assert {r["section"] for r in recs} == {"conv"}
    assert {r["case"] for r in recs} == {"convnet b4", "siamese_aux b4"}
    for case in ("convnet b4", "siamese_aux b4"):
        variants = {r["variant"]: r for r in recs if r["case"] == case}
        assert set(variants) == expected_variants()
        assert variants["torch"]["x_vs_torch"] == pytest.approx(1.0)
        for r in variants.values():
            assert r["flop"] > 0 and 0 < r["pct_gemm_peak"] and r["gflops"] == pytest.approx(r["flop"] / r["median_s"] / 1e9)
    assert {c["case"] for c in data["loss_checks"]} == {"convnet b4", "siamese_aux b4"}
    assert all(c["ok"] and len(c["losses"]) == len(expected_variants()) for c in data["loss_checks"])
    assert "### conv" in capsys.readouterr().out


def test_conv_step_flops_count_each_layer():
    from minidl.bench.conv import step_flops
    # convnet at batch 1: conv 2->32 (12x12 outputs, 18 taps), conv 32->64 (4x4, 288), Linear 256->200, 200->2
    macs = [144 * 32 * 18, 16 * 64 * 288, 256 * 200, 200 * 2]
    assert step_flops("convnet", 1) == 2 * (3 * sum(macs) - macs[0])


@pytest.mark.parametrize("argv,message", [
    (["--sections", "nope"], "unknown sections ['nope']"),
    (["--threads", "a"], "--threads: expected positive integers"),
    (["--threads", "1,0"], "--threads: expected positive integers"),
    (["--repeats", "0"], "--repeats must be positive, got 0"),
    (["--target", "-1"], "--target must be positive"),
    (["--json", "/nonexistent-minidl-folder/x.json"], "folder /nonexistent-minidl-folder does not exist"),
])
def test_bad_options_rejected_before_running(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_calibrate_does_not_trust_a_slow_first_call():
    """A first call that pays for set-up (on a GPU: cuBLAS handles, lazy kernel loading) must not
    make every later measurement a single call, which would time the device synchronisation."""
    calibrate = bench.calibrate
    calls = []

    def fn():
        calls.append(None)
        if len(calls) == 1:
            time.sleep(0.06)

    assert calibrate(fn, target=0.05, sync=lambda: None) > 100
    assert calibrate(lambda: time.sleep(0.06), target=0.05, sync=lambda: None) == 1


def test_measure_times_no_call_that_follows_another_variant():
    """A call right after another variant's is slow (its data left the caches): each timed loop
    follows an untimed call of its own variant, so the medians are the steady calls' time."""
    last = [None]

    def variant(name):
        def fn():
            time.sleep(0.03 if last[0] != name else 0.002)  # 30 ms after a switch, 2 ms after itself
            last[0] = name
        return bench.Variant(name, fn)

    stats = bench.measure([variant("a"), variant("b")], repeats=3, target=0.02, sync=lambda: None)
    for s in stats.values():
        assert s["inner"] >= 2  # calibrated on the 2 ms calls
        assert s["median_s"] < 0.004, s  # a timed switch would add 28 ms / inner (about 10 here) per call


@pytest.mark.parametrize("sizes,batch", [((784, 1024, 1024, 10), 4), ((2, 25, 25, 25, 2), 7)])
def test_step_flops_count_what_torch_and_the_matmuls_variant_multiply(sizes, batch):
    """step_flops, the "matmuls alone" variant and torch's own training step (whose input needs no
    gradient) all count the same matrix products, as torch's FlopCounterMode sees them."""
    from torch.utils.flop_counter import FlopCounterMode
    torch_step = bench.torch_step_fn(bench.torch_copy(bench.build_minidl_net(sizes, "cpu", 0)),
                                     torch.rand(batch, sizes[0]), torch.rand(batch, sizes[-1]))
    # FlopCounterMode has formulas for addmm, not for the in-place addmm_ that accumulates a gradient.
    addmm_ = {torch.ops.aten.addmm_: lambda c, a, b, out_shape=None, **_: 2 * a[0] * a[1] * b[1]}
    counted = []
    for fn, grad in ((bench.matmuls_fn(sizes, batch, "cpu"), False), (torch_step, True)):
        with torch.set_grad_enabled(grad), FlopCounterMode(display=False, custom_mapping=addmm_) as counter:
            fn()
        counted.append(counter.get_total_flops())
    assert counted == [bench.step_flops(sizes, batch)] * 2


def test_update_idle_cost_tool(tmp_path):
    tool = REPO / "tools" / "update_idle_cost.py"
    out = tmp_path / "idle.json"
    run = subprocess.run([sys.executable, str(tool), "--gaps", "0", "1", "--repeats", "2", "--rounds", "1",
                          "--json", str(out)], env=ENV, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    rows = [line.split("|") for line in run.stdout.splitlines() if line[:3] in ("| 0", "| 1")]
    assert [row[1].strip() for row in rows] == ["0", "1"], run.stdout
    data = json.loads(out.read_text())
    sizes = bench.MLP_SIZES
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    assert data["bytes"] == 5 * 4 * n_params  # p and v read and written, g read
    assert {g: len(ts) for g, ts in data["times_s"].items()} == {"0.0": 2, "1.0": 2}
    bad = subprocess.run([sys.executable, str(tool), "--repeats", "0"], env=ENV, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "--repeats, --rounds and --threads must be positive" in bad.stderr


@pytest.mark.parametrize("act", [minidl.ReLU, minidl.Tanh])
def test_calls_section_gives_mlp_forward_the_network_as_its_module_does(act):
    """The calls section builds mlp_forward's arguments from the public Linear attributes and the
    op's activation codes: the op then computes what the network's own forward does."""
    require_cpp()
    torch.manual_seed(0)
    net = minidl.Sequential(minidl.Linear(3, 5), act(), minidl.Linear(5, 4), act(), minidl.Linear(4, 2))
    x, previous = torch.randn(7, 3), minidl.get_backend()
    minidl.set_backend("cpp")  # the same kernels both ways
    try:
        with torch.no_grad():
            outputs = torch.ops.minidl.mlp_forward.default(x, *bench.mlp_arguments(net))
            assert torch.equal(outputs[-1], net.forward(x))
    finally:
        minidl.set_backend(previous)
