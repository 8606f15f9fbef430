"""Issue 35, items 13, 14, 19 and 20: what the web app keeps, shows and lets in.

Hostile uploads run in a child process under RLIMIT_AS = 2 GB and a CPU-time cap (``hostile.run_capped``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import hostile

pytest.importorskip("gradio")

REPO = Path(__file__).resolve().parents[1]
ENTRY = [sys.executable, str(REPO / "tests" / "capped_entry.py")]


def _results(capped: hostile.Capped) -> list[dict]:
    assert capped.returncode == 0 and not capped.hit_cap, capped.stderr[-2000:]
    return [json.loads(line) for line in capped.stdout.splitlines() if '"name"' in line]


# ----------------------------------------------------------------------------- item 13: big ICC profiles

def test_big_colour_profiles_do_not_outlive_their_request():
    """Eight renders of photos with distinct 16 MB ICC profiles (before: each stayed in a 32-entry cache,
    ~60 MB per upload with the issue's profiles): resident memory after the last is that after the first."""
    results = _results(hostile.run_capped([*ENTRY, "profiles", "8", "16"], cwd=REPO))
    assert [r["outcome"] for r in results] == ["ok"] * 8, results
    rss = [int(r["message"]) for r in results]
    assert rss[-1] - rss[0] < 24, f"resident MB after each request: {rss}"
