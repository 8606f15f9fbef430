"""Progress of long jobs: steps done / total, a measured rate, lines off a terminal, one line on it."""
import io

from csr_cli.progress import StepProgress, clock


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_off_a_terminal_prints_lines_with_measured_rate_and_time_left(monkeypatch):
    import csr_cli.progress

    now = _Clock()
    monkeypatch.setattr(csr_cli.progress.time, "monotonic", now)
    out = io.StringIO()
    p = StepProgress("fine-tuning", bound=True, stream=out, interval=10, tty=False)
    for step in range(1, 82):  # 8 steps per second, 600 at most
        now.t = 100 + step / 8
        p(dict(step=step, steps=600, loss=0.05, phase="fold 1/5", **({"val": 21.5} if step == 50 else {})))
    p(dict(step=82, steps=300, loss=0.04, phase="fold 2/5"))  # a phase change prints at once
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("fine-tuning: fold 1/5, step 1/at most 600")  # the first step: no rate yet
    assert lines[1].startswith("fine-tuning: fold 1/5, step 81/at most 600 · 8.0 steps/s, 0:10 elapsed, "
                               "about 1:05 left")  # after `interval` seconds
    assert "held-out 21.50 dB" in lines[1] and "val " not in lines[1]  # in words, not lab shorthand
    assert lines[2].startswith("fine-tuning: fold 2/5, step 82/at most 300") and "held-out" not in lines[2]
    assert lines[-1] == "fine-tuning: done in 0:10" and len(lines) == 5  # the 3 above, the last state, done
    assert "\r" not in out.getvalue()


def test_on_a_terminal_one_line_is_redrawn_and_a_resume_does_not_inflate_the_rate(monkeypatch):
    import csr_cli.progress

    now = _Clock()
    monkeypatch.setattr(csr_cli.progress.time, "monotonic", now)
    out = io.StringIO()
    with StepProgress("training", stream=out, tty=True) as p:
        for step in range(4001, 4051):  # resumed at step 4000 of 5000: 5 steps per second here
            now.t = 100 + step / 5
            p(dict(step=step, steps=5000, loss=0.1))
    text = out.getvalue()
    assert text.count("\n") == 2 and text.count("\r") >= 2
    last = text.split("\r")[-1].splitlines()[0]
    assert last.startswith("training: step 4050/5000 · 5.0 steps/s") and "3:10 left" in last  # 950 steps at 5/s


def test_a_slow_job_counts_in_its_own_unit_and_in_seconds_each(monkeypatch):
    """Scoring pairs of camera size: 'pair 3/10', and 37 s a pair rather than '0.0 pairs/s'."""
    import csr_cli.progress

    now = _Clock()
    monkeypatch.setattr(csr_cli.progress.time, "monotonic", now)
    out = io.StringIO()
    p = StepProgress("scoring", unit="pair", stream=out, interval=10, tty=False)
    for done in range(4):
        now.t = 100 + 37 * done
        p(dict(step=done, steps=10))
    assert out.getvalue().splitlines()[-1] == "scoring: pair 3/10 · 37 s/pair, 1:51 elapsed, 4:19 left"


def test_work_between_steps_is_shown_as_it_goes_and_the_held_out_score_pooled_so_far(monkeypatch):
    """Finished photos turned into a run's examples (seconds, no steps): a line when it starts and when the steps
    start again, its percentage on a terminal; that work before the first step does not slow the measured rate;
    the score pooled over the pairs held out so far stays on every line, across phases."""
    import csr_cli.progress

    now = _Clock()
    monkeypatch.setattr(csr_cli.progress.time, "monotonic", now)
    out = io.StringIO()
    p = StepProgress("fine-tuning", bound=True, stream=out, interval=10, tty=False)
    task = dict(phase="fold 1/5", task="turning finished photos into examples")
    for pct in range(0, 101, 10):  # 9 s before the first step (under the interval: no line of its own)
        now.t = 100 + 0.09 * pct
        p(dict(task, step=0, steps=600, task_done=pct / 100))
    for step in range(1, 82):  # then 8 steps per second
        now.t = 109 + step / 8
        p(dict(step=step, steps=600, loss=0.05, phase="fold 1/5"))
    held = dict(psnr=23.4, pairs=2, of=6)
    p(dict(task, phase="fold 2/5", step=81, steps=500, task_done=0, held_out=held))
    p(dict(step=82, steps=500, loss=0.05, phase="fold 2/5", held_out=held))
    lines = out.getvalue().splitlines()
    assert lines[0] == "fine-tuning: fold 1/5, turning finished photos into examples 0%, step 0/at most 600"
    assert lines[1] == "fine-tuning: fold 1/5, step 1/at most 600 · loss 0.0500"  # the steps start: said at once
    assert lines[2].startswith("fine-tuning: fold 1/5, step 81/at most 600 · 8.0 steps/s, 0:10 elapsed")
    assert lines[3] == ("fine-tuning: fold 2/5, turning finished photos into examples 0%, step 81/at most 500 · "
                        "8.0 steps/s, 0:10 elapsed, about 0:52 left · held-out so far: 23.40 dB on 2 of 6 pairs")
    assert lines[4].startswith("fine-tuning: fold 2/5, step 82/at most 500 · ")
    assert lines[4].endswith(" · loss 0.0500 · held-out so far: 23.40 dB on 2 of 6 pairs") and len(lines) == 5
    tty = io.StringIO()
    p = StepProgress("fine-tuning", bound=True, stream=tty, tty=True)
    for pct in (0, 40):
        now.t += 1
        p(dict(task, step=0, steps=600, task_done=pct / 100))
    assert tty.getvalue().split("\r")[-1].startswith("fine-tuning: fold 1/5, turning finished photos into examples 40%")


def test_on_a_terminal_the_line_is_cut_to_its_width(monkeypatch):
    """A status line wider than the terminal wraps, and \\r then redraws only its last row: each draw left a
    line behind. The fold, the work between runs and the pooled score make it 170 characters: cut to the width."""
    monkeypatch.setenv("COLUMNS", "80")
    tty = io.StringIO()
    p = StepProgress("fine-tuning", bound=True, stream=tty, tty=True)
    held = dict(psnr=23.4, pairs=2, of=6)
    for pct in (0, 40, 80):
        p(dict(step=81, steps=500, phase="fold 2/5", task="turning finished photos into examples",
               task_done=pct / 100, held_out=held))
    p(dict(step=82, steps=500, loss=0.05, phase="fold 2/5", held_out=held))
    drawn = tty.getvalue().split("\r")[1:]
    assert len(drawn) == 2 and all(len(line) == 79 for line in drawn), [len(line) for line in drawn]
    assert drawn[0].startswith("fine-tuning: fold 2/5, turning finished photos into examples 0%, step 81/")
    assert drawn[1].startswith("fine-tuning: fold 2/5, step 82/at most 500 · loss 0.0500 · held-out so far")


def test_the_web_app_shows_the_same_progress_in_its_words():
    """Teaching in the web app: the work between runs with its percentage, the score pooled so far."""
    from csr_plugins.gradio_app.teach import progress_info

    held = dict(psnr=23.4, pairs=2, of=6)
    assert progress_info(dict(step=81, steps=500, phase="fold 2/5", task="turning finished photos into examples",
                              task_done=0.4, held_out=held)) == (
        0.162, "fold 2/5 · turning finished photos into examples 40% · step 81/500 · validation PSNR so far "
               "23.40 dB on 2 of 6 pairs")
    assert progress_info(dict(step=82, steps=500, phase="fold 2/5", loss=0.05))[1] == "fold 2/5 · step 82/500"


def test_clock():
    assert [clock(s) for s in (0, 42, 185, 3723)] == ["0:00", "0:42", "3:05", "1:02:03"]
