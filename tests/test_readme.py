"""README tells the truth: its example runs, and CI runs its two commands word for word."""
import re
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def _run(code):
    torch.manual_seed(0)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace["loss"].item()


def test_first_network_example_trains(backend_name):
    """The README's first example runs as printed, and its 100 steps lower the loss of its first step."""
    code = _blocks("python")[0]
    assert "range(100)" in code
    first, last = _run(code.replace("range(100)", "range(1)")), _run(code)
    assert last < 0.9 * first, (first, last)


def test_ci_runs_the_two_commands_word_for_word():
    commands = [line.split("#")[0].strip() for line in _blocks("bash")[0].splitlines() if line.strip()]
    assert len(commands) == 2, commands
    ci = (REPO / ".ci" / "run").read_text()
    assert commands[0] in ci
    install, test = commands[1].split(" && ")
    assert install in ci and re.search(rf"^{test}$", ci, flags=re.M), "CI must run README's test command"
