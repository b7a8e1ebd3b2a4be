"""Bad input everywhere: each case of a table gives one exception type (or exit status) and message."""

import math

import pytest
import torch

from minidl.pairs import TrainConfig, build_model, generate_pair_sets, train_model
from minidl.pairs.__main__ import main
from minidl.pairs.study import StudyConfig, run_study

NO_CUDA = not torch.cuda.is_available()
VALID = "valid: mlp, convnet, siamese, convnet_aux, siamese_aux"

# command-line arguments -> exit status 2 and this fragment of the one-line error
CLI_CASES = [
    (["--models", "mlp,resnet"], f"unknown model(s) resnet; {VALID}"),
    (["--models", ","], "unknown model(s) (none given)"),
    (["--rounds", "0"], "argument --rounds: must be > 0, got 0"),
    (["--rounds", "1.5"], "argument --rounds: invalid int value: '1.5'"),
    (["--epochs", "0"], "argument --epochs: must be > 0, got 0"),
    (["--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
    (["--n-pairs", "-5"], "argument --n-pairs: must be > 0, got -5"),
    (["--n-pairs", "1300"], "cannot draw --n-pairs 1300 pairs: generate_pair_sets: nb=1300 pairs "
                            "need 2600 distinct images but the pool holds 2500"),
    (["--lr", "0"], "argument --lr: must be > 0, got 0"),
    (["--lr=-1e-3"], "argument --lr: must be > 0, got -1e-3"),
    (["--lr", "nan"], "argument --lr: must be a finite number, got nan"),
    (["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
    (["--batch-size", "0"], "argument --batch-size: must be > 0, got 0"),
    (["--aux-weight", "-1"], "argument --aux-weight: must be >= 0, got -1"),
    (["--aux-weight", "inf"], "argument --aux-weight: must be a finite number, got inf"),
    (["--jobs", "0"], "argument --jobs: must be > 0, got 0"),
    (["--threads", "-2"], "argument --threads: must be > 0, got -2"),
    (["--seed", "-1"], "argument --seed: must be >= 0, got -1"),
    (["--shift", "4"], "argument --shift: invalid choice: 4"),
    (["--optimizer", "rmsprop"], "argument --optimizer: invalid choice: 'rmsprop'"),
    (["--schedule", "step"], "argument --schedule: invalid choice: 'step'"),
    (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    pytest.param(["--device", "cuda"], "--device cuda: no CUDA device available",
                 marks=pytest.mark.skipif(not NO_CUDA, reason="a CUDA device is present")),
    (["--data-dir", "/nonexistent/mnist"], "--data-dir /nonexistent/mnist is not a directory"),
    (["--resume", "--overwrite"], "argument --overwrite: not allowed with argument --resume"),
    (["--resume"], "--resume: no study to resume in"),
]


@pytest.mark.parametrize("args, message", CLI_CASES)
def test_bad_command_line_exits_2_with_a_message(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: python -m minidl.pairs" in err and f"python -m minidl.pairs: error: {message}" in err
    assert not list(tmp_path.iterdir())  # nothing written


def study(**options):
    """A StudyConfig with TrainConfig options prefixed train_, others as given."""
    train = {k[len("train_"):]: v for k, v in options.items() if k.startswith("train_")}
    rest = {k: v for k, v in options.items() if not k.startswith("train_")}
    return StudyConfig(**rest, train=TrainConfig(**train))


def tiny_training(**options):
    """Train an MLP on 10 pairs with these TrainConfig options."""
    return train_model(build_model("mlp"), generate_pair_sets(10), TrainConfig(**options))


# a call -> this exception type with this message fragment (a regular expression)
CALL_CASES = [
    (lambda: generate_pair_sets(0), ValueError, r"generate_pair_sets: nb must be a positive int, got 0"),
    (lambda: generate_pair_sets(-3), ValueError, r"nb must be a positive int, got -3"),
    (lambda: generate_pair_sets(2.5), ValueError, r"nb must be a positive int, got 2\.5"),
    (lambda: generate_pair_sets("10"), ValueError, r"nb must be a positive int, got '10'"),
    (lambda: generate_pair_sets(True), ValueError, r"nb must be a positive int, got True"),
    (lambda: generate_pair_sets(10, test_nb=0), ValueError, r"test_nb must be a positive int, got 0"),
    (lambda: generate_pair_sets(1251), ValueError,
     r"nb=1251 pairs need 2502 distinct images but the pool holds 2500"),
    (lambda: generate_pair_sets(10, test_nb=1300), ValueError, r"nb=1300 pairs need 2600"),
    (lambda: generate_pair_sets(10, seed="a"), ValueError, r"seed must be an int, got 'a'"),
    (lambda: generate_pair_sets(10, data_dir="/nonexistent/mnist"), FileNotFoundError,
     r"generate_pair_sets: data_dir /nonexistent/mnist is not a directory"),
    (lambda: build_model("resnet"), ValueError, rf"unknown model 'resnet'; {VALID.replace('valid', 'valid names')}"),
    (lambda: TrainConfig(epochs=0).validate(), ValueError, r"epochs must be an int >= 1, got 0"),
    (lambda: TrainConfig(epochs=2.0).validate(), ValueError, r"epochs must be an int >= 1, got 2\.0"),
    (lambda: TrainConfig(batch_size=0).validate(), ValueError, r"batch_size must be an int >= 1, got 0"),
    (lambda: TrainConfig(lr=0).validate(), ValueError, r"lr must be a finite number > 0, got 0"),
    (lambda: TrainConfig(lr=-0.1).validate(), ValueError, r"lr must be a finite number > 0, got -0\.1"),
    (lambda: TrainConfig(lr=math.inf).validate(), ValueError, r"lr must be a finite number > 0, got inf"),
    (lambda: TrainConfig(aux_weight=-0.5).validate(), ValueError,
     r"aux_weight must be a finite number >= 0, got -0\.5"),
    (lambda: TrainConfig(aux_weight=math.nan).validate(), ValueError, r"aux_weight .* got nan"),
    (lambda: TrainConfig(shift=5).validate(), ValueError, r"shift must be an int in 0\.\.3, got 5"),
    (lambda: TrainConfig(optimizer="rmsprop").validate(), ValueError,
     r"unknown optimizer 'rmsprop'; valid: adam, sgd"),
    (lambda: TrainConfig(device="tpu").validate(), ValueError, r"bad device 'tpu'"),
    (lambda: TrainConfig(device="meta").validate(), ValueError, r"device 'meta' unsupported; use cpu or cuda"),
    pytest.param(lambda: TrainConfig(device="cuda").validate(), ValueError,
                 r"device 'cuda' requested but CUDA is not available",
                 marks=pytest.mark.skipif(not NO_CUDA, reason="a CUDA device is present")),
    (lambda: tiny_training(epochs=1, lr=0), ValueError, r"lr must be a finite number > 0, got 0"),
    (lambda: study(models=("mlp", "resnet")).validate(), ValueError, rf"unknown model\(s\) resnet; {VALID}"),
    (lambda: study(models=()).validate(), ValueError, r"unknown model\(s\) \(none given\)"),
    (lambda: study(rounds=0).validate(), ValueError, r"rounds must be an int >= 1, got 0"),
    (lambda: study(n_pairs=-1).validate(), ValueError, r"n_pairs must be an int >= 1, got -1"),
    (lambda: study(jobs=0).validate(), ValueError, r"jobs must be an int >= 1, got 0"),
    (lambda: study(threads=0).validate(), ValueError, r"threads must be an int >= 1, got 0"),
    (lambda: study(seed=-2).validate(), ValueError, r"seed must be an int >= 0, got -2"),
    (lambda: study(train_lr=-1.0).validate(), ValueError, r"lr must be a finite number > 0"),
    (lambda: run_study(study(rounds=0)), ValueError, r"rounds must be an int >= 1, got 0"),
]


@pytest.mark.parametrize("call, error, message", CALL_CASES)
def test_bad_call_raises_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
