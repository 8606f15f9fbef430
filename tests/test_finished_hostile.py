"""``csr finetune --finished`` on hostile folders: bounded time and memory, one clear line, nothing written.

Each case runs the real CLI in a child under RLIMIT_AS = 2 GB and a CPU-time cap (``hostile.run_capped``).
"""
from __future__ import annotations

import os
import sys

import pytest

import hostile
from conftest import REPO
from pairs_util import write_pairs

pytest.importorskip("torch")

CHILD = """
import sys
sys.path.insert(0, {repo!r})
from click.testing import CliRunner
from csr_cli.main import cli
res = CliRunner().invoke(cli, ["finetune", "--pairs", sys.argv[1], "--finished", sys.argv[2], "--name", "mine",
                               "--steps", "10"])
print("EXIT", res.exit_code)
print(res.output)
"""


def _run(tmp_path, finished):
    pairs = write_pairs(tmp_path / "pairs", 3)
    env = dict(os.environ, CSR_HOME=str(tmp_path / "home"))
    before = hostile.snapshot(finished)
    capped = hostile.run_capped([sys.executable, "-c", CHILD.format(repo=str(REPO)), str(pairs), str(finished)],
                                cpu_s=60, wall_s=120, env=env)
    assert not capped.hit_cap, (capped.seconds, capped.peak_mb, capped.stderr[-800:])
    assert hostile.snapshot(finished) == before  # nothing in the user's folder written or changed
    return capped


def test_folder_of_100000_tiny_files_is_bounded(tmp_path):
    folder = tmp_path / "finished"
    folder.mkdir()
    for i in range(100_000):
        (folder / f"{i:06d}.jpg").write_bytes(b"\xff\xd8")
    capped = _run(tmp_path, folder)
    assert "EXIT 1" in capped.stdout and "no readable photo among 100000 image files" in capped.stdout
    assert "Traceback" not in capped.stdout + capped.stderr
    assert capped.seconds < 60  # memory: the child's 2 GB address-space cap


def test_decompression_bomb_is_refused_as_in_retouch(tmp_path):
    folder = tmp_path / "finished"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(hostile.png_with_ihdr(60_000, 60_000))
    capped = _run(tmp_path, folder)
    assert "EXIT 1" in capped.stdout and "bomb.png" in capped.stdout
    assert "no readable photo among 1 image files" in capped.stdout
    assert "Traceback" not in capped.stdout + capped.stderr
