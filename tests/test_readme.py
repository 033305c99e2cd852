"""Every code block of the README runs as printed, and what it shows is what it does.

Python blocks run one by one, each in a fresh namespace, in a scratch folder where ``data/`` and ``notebooks/`` are the
repository's (so files they write stay out of the repository). Bash blocks: the set-up command is
the one ``.ci/run`` runs (its install half) and its run half prints the output the README shows;
the CPU-wheel variant differs only in PyTorch's index; the test command is ``.ci/run``'s; the
fine-tuning commands run with ``--steps`` cut to 1, the held-out set to its first 4 conversations and
``generate`` to 8 new tokens, so that each takes seconds, not minutes."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```$", README, re.M | re.S)]
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
HEADINGS = [re.findall(r"^#+ (.+)$", README[:README.index(code)], re.M)[-1] for code in PYTHON]  # for test ids
BASH = [code for lang, code in BLOCKS if lang == "bash"]
CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu"


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    (tmp_path / "data").symlink_to(ROOT / "data")
    (tmp_path / "notebooks").symlink_to(ROOT / "notebooks")  # the course's scripts (notebook 16's model)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def commands(block):
    """A bash block -> its commands: continuation lines joined, comments dropped."""
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip()]


@pytest.mark.parametrize("index", range(len(PYTHON)), ids=[f"{i + 1}: {h}" for i, h in enumerate(HEADINGS)])
def test_python_block_runs(index, scratch):
    exec(compile(PYTHON[index], f"README python block {index + 1}", "exec"), {"__name__": "readme"})


def test_the_blocks_are_the_ones_this_file_knows():
    assert len(PYTHON) == 8 and len(BASH) == 4


def test_set_up_command_is_what_ci_installs_and_prints_what_the_readme_shows():
    ci = (ROOT / ".ci/run").read_text()
    install_torch, install_rest, run = (part.strip() for part in BASH[0].strip().split("&&"))
    assert install_torch in ci and install_rest in ci  # the same installs, in the same order
    assert ci.index(install_torch) < ci.index(install_rest)
    shown = BLOCKS[BLOCKS.index(("bash", BASH[0])) + 1]
    assert shown[0] == ""  # the plain block that follows holds the output
    out = subprocess.run(shlex.split(run), cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == shown[1].strip()


def test_cpu_wheel_command_differs_only_in_the_index():
    plain, cpu = BASH[0].strip(), BASH[1].strip()
    assert cpu == plain.replace("pip install torch==2.13.0", f"pip install torch==2.13.0 {CPU_INDEX}", 1)


def test_test_command_is_the_one_ci_runs():
    [command] = commands(BASH[2])
    assert shlex.join(command) in (ROOT / ".ci/run").read_text()


def shortened(command, heldout):
    """The same command with less work: 1 step, a 4-conversation held-out set, 8 new tokens."""
    swap = {"--steps": "1", "--eval": str(heldout)}
    command = [swap.get(previous, word) for previous, word in zip([""] + command, command)]
    if "generate" in command:
        command += ["--max-new-tokens", "8"]
    return command


def test_fine_tuning_commands_run(scratch):
    heldout = scratch / "heldout-4.jsonl"
    heldout.write_text("".join((ROOT / "data/tool_calls/heldout.jsonl").read_text().splitlines(True)[:4]))
    for command in commands(BASH[3]):
        command = shortened(command, heldout)
        if command[0] == "python":
            command[0] = sys.executable
        env = {**os.environ, "OMP_NUM_THREADS": "1"} if command[0] == "torchrun" else None
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        assert done.returncode == 0, (command, done.stderr[-2000:])
    assert (scratch / "my-adapter" / "adapter_model.safetensors").exists()
    assert (scratch / "my-adapter-ddp" / "adapter_model.safetensors").exists()
