"""fit()'s weight averaging (EMA) and loss options: the averaged weights are what it validates and
returns, they survive a checkpoint resume, the psnr loss is per image, and an unknown loss is refused."""
import pytest
import torch

from csr_core.model import CSRNet
from csr_core.train import TrainConfig, fit

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data():
    g = torch.Generator().manual_seed(0)
    return [(torch.rand(1, 3, 16, 16, generator=g), torch.rand(64, 3, generator=g), torch.rand(64, 3, generator=g))
            for _ in range(2)]


def _run(steps, ema, checkpoint=None, record=None, **cfg):
    """A tiny constant-lr run on fixed samples; ``record`` collects the weights on_progress sees."""
    torch.manual_seed(0)
    model, data, calls = CSRNet(), _data(), iter(range(10 ** 6))  # rising scores: the last eval is the best
    progress = None if record is None else (
        lambda info: record.append({k: v.detach().clone() for k, v in model.state_dict().items()}))
    cfg = TrainConfig(**{**dict(steps=steps, batch=2, lr=1e-2, lr_min=1e-2, eval_every=steps,
                                checkpoint_every=3, ema=ema), **cfg})
    fit(model, lambda rng, n: data, cfg, lambda m: next(calls), checkpoint, progress)
    return model.state_dict()


def test_returned_weights_are_the_moving_average_of_the_trajectory():
    start, raw = _run(0, 0.0), []
    last = _run(6, 0.0, record=raw)  # EMA never changes the optimiser's own path
    expected = {k: v.clone() for k, v in start.items()}
    for state in raw:
        for k in expected:
            expected[k].lerp_(state[k], 0.2)
    averaged = _run(6, 0.8)
    for k in expected:
        torch.testing.assert_close(averaged[k], expected[k], rtol=0, atol=1e-6)
    assert max((averaged[k] - last[k]).abs().max() for k in expected) > 1e-4  # not the last weights


def test_progress_sees_the_averaged_weights():
    seen = []
    final = _run(4, 0.5, record=seen)
    for k in final:
        torch.testing.assert_close(seen[-1][k], final[k], rtol=0, atol=0)


def test_resumed_run_keeps_its_average(tmp_path):
    ck = tmp_path / "run.ckpt"
    straight = _run(6, 0.7)
    def stop(info):  # interrupted during step 4: the checkpoint of step 3 is on disk
        if info["step"] == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        torch.manual_seed(0)
        model, data = CSRNet(), _data()
        fit(model, lambda rng, n: data, TrainConfig(steps=6, batch=2, lr=1e-2, lr_min=1e-2, eval_every=6,
                                                    checkpoint_every=3, ema=0.7), lambda m: 0.0, ck, stop)
    assert ck.exists()
    resumed = _run(6, 0.7, ck)
    for k in straight:
        torch.testing.assert_close(resumed[k], straight[k], rtol=0, atol=1e-6)


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="unknown loss 'l3'"):
        _run(1, 0.0, loss="l3")


def test_psnr_loss_is_minus_the_mean_per_image_psnr():
    from csr_core.metrics import psnr_from_mse
    from csr_core.train import _LOSSES
    g = torch.Generator().manual_seed(1)
    pred, target = torch.rand(3, 50, 3, generator=g), torch.rand(3, 50, 3, generator=g)
    target[0] = pred[0] + 0.01  # one nearly right image: per-image PSNR weighs it, a pooled MSE would not
    per_image = [psnr_from_mse(((pred[i] - target[i]) ** 2).mean().item() + 1e-5, peak=1.0) for i in range(3)]
    assert _LOSSES["psnr"](pred, target).item() == pytest.approx(-sum(per_image) / 3, rel=1e-5)
    assert _LOSSES["psnr"](pred, target).item() != pytest.approx(_LOSSES["mse"](pred, target).log10().item() * 10)
