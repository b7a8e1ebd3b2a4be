"""Models' contract and size, augmentation semantics, and that training learns."""

import pytest
import torch

from minidl.pairs import MODELS, TrainConfig, build_model, count_parameters, generate_pair_sets, train_model
from minidl.pairs import dl_models
from minidl.pairs.train import shift_digits, swap_pairs

AUX = {"convnet_aux", "siamese_aux"}
FRAMEWORKS = ["minidl", "torch"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest single-threaded (and do not fight other processes for cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small_sets():
    return generate_pair_sets(200, seed=11)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("name", list(MODELS))
def test_output_contract_and_size(name, framework):
    torch.manual_seed(0)
    model = build_model(name, framework)
    n = count_parameters(model)
    print(f"{name}: {n} parameters")
    assert 60_000 <= n <= 80_000
    assert abs(n - 70_000) <= 7_000  # within 10% of the common budget
    model.eval()
    logits, digits = model(torch.rand(7, 2, 14, 14))
    assert logits.shape == (7, 2)
    if name in AUX:
        assert digits.shape == (7, 2, 10)
    else:
        assert digits is None
    one, _ = model(torch.rand(1, 2, 14, 14))  # batch of one works in eval mode
    assert one.shape == (1, 2)


def test_build_model_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown model 'resnet'.*mlp, convnet, siamese, convnet_aux, siamese_aux"):
        build_model("resnet")


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("name", ["siamese", "siamese_aux"])
def test_siamese_shares_weights(name, framework):
    torch.manual_seed(0)
    model = build_model(name, framework).eval()
    x = torch.rand(5, 2, 14, 14) * 255
    if name == "siamese_aux":
        _, digits = model(x)
        _, swapped = model(x.flip(1))
        torch.testing.assert_close(swapped, digits.flip(1))
    # the branch sees each digit alone: changing digit b leaves digit a's branch output unchanged
    branch = model.branch
    y = x.clone()
    y[:, 1] = torch.rand(5, 14, 14)
    torch.testing.assert_close(branch(x[:, :1]), branch(y[:, :1]))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_convnet_mixes_both_digits(framework):
    torch.manual_seed(0)
    model = build_model("convnet", framework).eval()
    x = torch.rand(4, 2, 14, 14)
    y = x.clone()
    y[:, 1] = torch.rand(4, 14, 14)
    assert not torch.allclose(model(x)[0], model(y)[0])


def test_shift_digits_translates_each_digit_within_range():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 2, 14, 14) + 1  # nonzero everywhere, so the zero fill shows where it moved
    out = shift_digits(x, 2, g)
    assert out.shape == x.shape
    for n in range(6):
        for c in range(2):
            padded = torch.nn.functional.pad(x[n, c], (2, 2, 2, 2))
            matches = [(dy, dx) for dy in range(5) for dx in range(5)
                       if torch.equal(padded[dy:dy + 14, dx:dx + 14], out[n, c])]
            assert len(matches) == 1
    assert torch.equal(shift_digits(x, 0, g), x)


@pytest.mark.parametrize("max_shift", [0, 1, 3])
def test_shift_digits_moves_each_digit_by_its_own_draw(max_shift):
    x = torch.rand(5, 3, 14, 14).transpose(2, 3)  # any strides
    out = shift_digits(x, max_shift, torch.Generator().manual_seed(7))
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, 5, 3), generator=torch.Generator().manual_seed(7))
    windows = torch.nn.functional.pad(x, (max_shift,) * 4).unfold(2, 14, 1).unfold(3, 14, 1)
    assert torch.equal(out, windows[torch.arange(5)[:, None], torch.arange(3), dy, dx])
    assert shift_digits(x[:0], max_shift, torch.Generator()).shape == (0, 3, 14, 14)


def test_swap_pairs_keeps_images_and_classes_together():
    g = torch.Generator().manual_seed(1)
    x = torch.arange(40.0).view(20, 2, 1, 1).expand(20, 2, 14, 14)
    classes = torch.tensor([[i % 10, (3 * i) % 10] for i in range(20)])
    classes[0] = torch.tensor([4, 4])  # equal digits: the swapped target stays 1
    sx, sc = swap_pairs(x, classes, g)
    flipped = sx[:, 0, 0, 0] != x[:, 0, 0, 0]
    assert 0 < flipped.sum() < 20
    assert torch.equal(sx[flipped], x[flipped].flip(1)) and torch.equal(sx[~flipped], x[~flipped])
    assert torch.equal(sc[flipped], classes[flipped].flip(1)) and torch.equal(sc[~flipped], classes[~flipped])
    assert sc[0].tolist() == [4, 4]
    empty = swap_pairs(x[:0], classes[:0], g)
    assert empty[0].shape == (0, 2, 14, 14) and empty[1].shape == (0, 2)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("name", ["mlp", "convnet", "siamese_aux"])
def test_short_training_lowers_loss_and_error(small_sets, name, framework):
    torch.manual_seed(0)
    model = build_model(name, framework)
    config = TrainConfig(epochs=6, batch_size=50, lr=2e-3, framework=framework)
    result = train_model(model, small_sets, config, seed=3)
    assert len(result["train_loss_curve"]) == len(result["test_error_curve"]) == 6
    assert result["train_loss_curve"][-1] < 0.9 * result["train_loss_curve"][0]
    assert result["train_error"] == result["train_error_curve"][-1]
    assert result["train_error"] < 0.4 and result["test_error"] < 0.45
    assert result["seconds"] > 0


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_training_is_reproducible_and_leaves_global_rng(small_sets, framework):
    config = TrainConfig(epochs=2, curves=False, framework=framework)
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model("convnet_aux", framework)
        state = torch.get_rng_state()
        results.append(train_model(model, small_sets, config, seed=5))
        assert torch.equal(state, torch.get_rng_state())
    assert results[0]["train_loss_curve"] == results[1]["train_loss_curve"]
    assert results[0]["test_error"] == results[1]["test_error"]
    assert results[0]["train_error_curve"] == []  # curves=False skips per-epoch evaluation


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_sgd_and_unknown_optimizer(small_sets, framework):
    torch.manual_seed(0)
    config = TrainConfig(epochs=3, optimizer="sgd", lr=0.01, framework=framework)
    result = train_model(build_model("mlp", framework), small_sets, config, seed=0)
    assert result["train_loss_curve"][-1] < result["train_loss_curve"][0]
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        train_model(build_model("mlp"), small_sets, TrainConfig(optimizer="rmsprop"))


class PoisonAt(torch.nn.Module):
    """Wrap a model so that its CALL-th forward pass (from 0) returns NaN logits."""

    def __init__(self, model, call):
        super().__init__()
        self.model, self.call, self.calls = model, call, 0

    def forward(self, x):
        logits, digits = self.model(x)
        self.calls += 1
        return (logits * float("nan") if self.calls - 1 == self.call else logits), digits


class DlPoisonAt(dl_models.PairsModel):
    """PoisonAt for a minidl model."""

    def __init__(self, model, call):
        self.model, self.poisoned_call, self.calls = model, call, 0  # self.call is Module.call

    def forward_ctx(self, ctx, x):
        (logits, digits), ctx.model = self.model.call(x)
        self.calls += 1
        return (logits * float("nan") if self.calls - 1 == self.poisoned_call else logits), digits

    def backward_ctx(self, ctx, grad_logits, grad_digits=None):
        self.model.backward_ctx(ctx.model, grad_logits, grad_digits)

    def named_children(self):
        return [("model", self.model)]


def poisoned(name, framework, call):
    """The model NAME of FRAMEWORK whose CALL-th forward returns NaN logits."""
    return (DlPoisonAt if framework == "minidl" else PoisonAt)(build_model(name, framework), call)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_nonfinite_loss_stops_naming_epoch_and_step(small_sets, framework):
    torch.manual_seed(0)
    config = TrainConfig(epochs=3, batch_size=50, curves=False, framework=framework)  # 200 pairs: 4 steps an epoch
    model = poisoned("mlp", framework, call=5)
    with pytest.raises(FloatingPointError, match=r"^loss became nan at epoch 2, step 2$"):
        train_model(model, small_sets, config, seed=0)
    assert model.calls == 8  # stopped at the end of epoch 2, not trained on


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_nan_input_is_reported_at_the_step_of_its_batch(small_sets, framework):
    sets = list(small_sets)
    sets[0] = sets[0].clone()
    sets[0][17, 1, 3, 4] = float("nan")
    config = TrainConfig(epochs=2, batch_size=40, normalize=False, swap=False, shift=0, curves=False,
                         framework=framework)
    # with no swap or shift the epoch's shuffle is the first draw of the run's generator
    order = torch.randperm(200, generator=torch.Generator().manual_seed(7))
    step = int((order == 17).nonzero()) // 40 + 1
    torch.manual_seed(0)
    with pytest.raises(FloatingPointError, match=rf"^loss became nan at epoch 1, step {step}$"):
        train_model(build_model("convnet", framework), sets, config, seed=7)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_nonfinite_check_can_be_turned_off(small_sets, framework):
    torch.manual_seed(0)
    config = TrainConfig(epochs=3, batch_size=50, curves=False, check_finite=False, framework=framework)
    result = train_model(poisoned("mlp", framework, call=5), small_sets, config, seed=0)
    curve = torch.tensor(result["train_loss_curve"])
    assert len(curve) == 3 and curve[0].isfinite() and curve[1:].isnan().all()


def test_study_names_the_model_and_round_of_a_nonfinite_loss(tmp_path, capsys):
    from minidl.pairs.__main__ import main

    out = tmp_path / "out"
    code = main(["--models", "mlp,siamese_aux", "--rounds", "2", "--epochs", "2", "--n-pairs", "200",
                 "--lr", "1e10", "--jobs", "1", "--threads", "1", "--quiet", "--out", str(out),
                 "--framework", "torch"])  # where this lr breaks one model and not the other
    err = capsys.readouterr().err
    assert code == 1
    assert "error: FloatingPointError: siamese_aux round 0 (seed 0): loss became nan at epoch" in err
    assert "1 finished run(s) are kept in" in err  # the mlp survives lr=1e10 for two epochs
    assert len((out / "rounds.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_training_works_with_autograd_globally_off(framework):
    """minidl users turn autograd off globally (torch.set_grad_enabled(False)); the study trains the same."""
    data = generate_pair_sets(100, seed=0)
    config = TrainConfig(epochs=2, curves=False, framework=framework)
    torch.manual_seed(0)
    reference = train_model(build_model("mlp", framework), data, config, seed=0)
    torch.set_grad_enabled(False)  # conftest's restore_grad_mode turns it back on after the test
    torch.manual_seed(0)
    result = train_model(build_model("mlp", framework), data, config, seed=0)
    assert result["train_loss_curve"] == reference["train_loss_curve"]
    assert result["test_error"] == reference["test_error"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_model_of_the_other_framework_is_refused(small_sets, framework):
    other = "torch" if framework == "minidl" else "minidl"
    with pytest.raises(ValueError, match=rf"^TrainConfig: framework '{framework}', but the model is a .*"
                                         rf"build_model\(name, framework='{framework}'\)$"):
        train_model(build_model("mlp", other), small_sets, TrainConfig(epochs=1, framework=framework))
