"""Honest progress for long jobs (``csr train``, ``csr finetune``): steps done / total, measured rate.

On a terminal one status line is redrawn in place; otherwise (a log, a pipe, CI) a line is printed at
every phase change and every ``interval`` seconds, so a long job never looks stuck. The rate is measured
on this process's own steps (a resumed job does not count the steps it inherited); the time left is
shown once the rate is known; when the total is an upper bound (early stopping) the steps say "at most" and the
time "about", since work between runs (making pseudo-pairs, scoring) is not counted in steps. Such work, reported as
a ``task`` with the fraction done, is shown as it goes, so the line never stands still for long.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from typing import TextIO

import click


def clock(seconds: float) -> str:
    """0:42, 3:05, 1:02:03."""
    s = int(round(seconds))
    h, m = divmod(s, 3600)
    m, s = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class StepProgress:
    """Call with each progress dict: ``step`` (steps done), ``steps`` (total), optional ``phase``,
    ``loss``, ``val_psnr`` / ``val`` (the score of this phase), ``held_out`` (psnr, pairs, of: the score
    pooled over the pairs held out so far, kept across phases), ``task`` and ``task_done`` (work between
    steps and the fraction of it done). ``bound``: the total is an upper bound (the job may stop early);
    ``unit``: what a step is called ('pair': 'pair 2/10')."""

    def __init__(self, label: str, *, bound: bool = False, stream: TextIO | None = None,
                 interval: float = 15.0, tty: bool | None = None, unit: str = "step"):
        self.label, self.bound, self.interval, self.unit = label, bound, interval, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.started = self.t0 = time.monotonic()
        self.first_step: int | None = None
        self.last_print, self.last_phase, self.last_task, self.val = 0.0, None, None, None
        self.width = 0
        self.info: dict = {}

    def __call__(self, info: dict) -> None:
        now = time.monotonic()
        if self.first_step is None and not info.get("task"):  # work before the first step is no step
            self.first_step, self.t0 = info["step"], now  # the rate counts the steps after the first report
        phase = info.get("phase")
        changed = phase != self.last_phase
        self.last_phase = phase
        if changed:
            self.val = None  # a score belongs to its phase (the final run has none)
        for key in ("val_psnr", "val"):
            if info.get(key) is not None:
                self.val = info[key]
        self.info = info
        task = info.get("task")
        changed = changed or task != self.last_task  # work between steps starts or ends: said at once too
        self.last_task = task
        if self.tty:
            if now - self.last_print >= 0.1 or info["step"] >= info["steps"] or changed:
                self._redraw(self.line(now))
                self.last_print = now
        elif changed or now - self.last_print >= self.interval:
            click.echo(self.line(now), file=self.stream)
            self.last_print = now

    def rate(self, now: float) -> float | None:
        done = self.info.get("step", 0) - (self.first_step or 0)
        elapsed = now - self.t0
        return done / elapsed if done >= 3 and elapsed >= 1.0 else None

    def line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        info = self.info
        upto = "at most " if self.bound else ""
        task = f"{info['task']} {info.get('task_done', 0):.0%}, " if info.get("task") else ""
        parts = [f"{self.label}: " + (f"{info['phase']}, " if info.get("phase") else "") + task
                 + f"{self.unit} {info.get('step', 0)}/{upto}{info.get('steps', 0)}"]
        rate = self.rate(now)
        if rate:
            left = max(0, info.get("steps", 0) - info.get("step", 0)) / rate
            # the step count is a bound, the time is not (work between runs is not in steps): "about"
            speed = f"{rate:.1f} {self.unit}s/s" if rate >= 0.1 else f"{1 / rate:.0f} s/{self.unit}"
            parts.append(f"{speed}, {clock(now - self.t0)} elapsed, {'about ' if upto else ''}{clock(left)} left")
        if info.get("loss") is not None:
            parts.append(f"loss {info['loss']:.4f}")
        if self.val is not None:
            parts.append(f"held-out {self.val:.2f} dB")  # what the photos left out of this run score
        held = info.get("held_out")
        if held:  # pooled over the runs done: steadier than one run's one or two pairs
            parts.append(f"held-out so far: {held['psnr']:.2f} dB on {held['pairs']} of {held['of']} pairs")
        return " · ".join(parts)

    def _redraw(self, text: str) -> None:
        text = text[:self._columns() - 1]  # a line that wraps is not redrawn by \r: each draw would add a line
        pad = " " * max(0, self.width - len(text))
        self.width = len(text)
        self.stream.write("\r" + text + pad)
        self.stream.flush()

    def _columns(self) -> int:
        """The terminal's width, where the status line is drawn (COLUMNS, else 80, when it cannot be told: not a
        terminal's stream, or a terminal of no size yet)."""
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
        return max(20, columns or shutil.get_terminal_size().columns)

    def close(self) -> None:
        """End the status line (a final line off a terminal) with the elapsed time."""
        if not self.info:
            return
        text = self.line() if not self.tty else None
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
        else:
            click.echo(text, file=self.stream)
        click.echo(f"{self.label}: done in {clock(time.monotonic() - self.started)}", file=self.stream)

    def __enter__(self) -> "StepProgress":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        elif self.tty and self.info:
            self.stream.write("\n")
