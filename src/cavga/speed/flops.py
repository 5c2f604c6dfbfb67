"""FLOP counts (``torch.utils.flop_counter``) of a training step by part, and the machine's own limit.

A training step's FLOPs are split into the parts that cost them, each counted on its own with
the step's own shapes and gradient requirements:

* encoder: forward and backward of the encoder, its latent heads (mu, logvar) and CAVGA-w's classifier;
* decoder: forward and backward of the decoder, down to z;
* discriminator: D's step (real and reconstructed images, forward and backward) plus D's
  forward and input-gradient backward inside G's step;
* gradcam: what the differentiable Grad-CAM adds: its first backward (``create_graph``) and the
  double backward of L_ae (or L_cga) down to the feature map.

The counter counts matrix products and convolutions (2 FLOPs a multiply-add), which is where
nearly all the arithmetic is; element-wise work and the optimiser updates are not counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from ..attention import class_maps, normalise_cam, unsupervised_cam_raw
from ..config import RunConfig
from ..losses import (
    adversarial_d_loss,
    adversarial_g_loss,
    attention_expansion_loss,
    complementary_guided_attention_loss,
)
from ..networks import CAVGA, Discriminator

PARTS = ("encoder", "decoder", "discriminator", "gradcam")


class _NoModules:
    """Stands in for FlopCounterMode's module tracker: its backward hooks break ``autograd.grad`` on
    a leaf (Grad-CAM at inference), and only the total is wanted here."""

    parents = ("Global",)

    def __enter__(self) -> _NoModules:
        return self

    def __exit__(self, *exc) -> None:
        return None


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs torch's flop counter sees while ``fn()`` runs (forward and any backward inside it)."""
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _NoModules()
    with counter:
        fn()
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fp32_tf32(device: torch.device) -> bool | None:
    """Whether CUDA fp32 arithmetic may run in TF32 on ``device``: cuDNN's convolutions do when
    ``torch.backends.cudnn.allow_tf32`` (True by default); None on a CPU, where no TF32 applies."""
    return bool(torch.backends.cudnn.allow_tf32) if device.type == "cuda" else None


@contextmanager
def _matmul_tf32(allow: bool | None) -> Iterator[None]:
    """``torch.backends.cuda.matmul.allow_tf32`` set to ``allow`` for the block, restored after
    (None: left alone)."""
    if allow is None:
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


class MatmulProbe:
    """The machine's dense matmul rate right now, FLOP/s: the best of ``repeats`` (n, n) @ (n, n)
    products per call, on operands and output allocated (and warmed up) once.

    fp32 on CUDA runs with TF32 exactly when the convolutions do (:func:`fp32_tf32`), so a
    convolution's fraction is of the limit it runs against; ``tf32`` says which (None: a CPU)."""

    def __init__(self, device: torch.device, dtype: torch.dtype, n: int | None = None, repeats: int = 3):
        self.device, self.repeats = device, repeats
        self.tf32 = fp32_tf32(device) if dtype == torch.float32 else None
        self.n = n or (8192 if device.type == "cuda" else 2048)
        self.a = torch.randn(self.n, self.n, device=device).to(dtype)  # (n, n)
        self.b = torch.randn(self.n, self.n, device=device).to(dtype)  # (n, n)
        with _matmul_tf32(self.tf32):
            self.c = torch.mm(self.a, self.b)  # (n, n) warm-up: kernels chosen, memory touched; reused as out

    def __call__(self) -> float:
        best = float("inf")
        with _matmul_tf32(self.tf32):
            for _ in range(self.repeats):
                _sync(self.device)
                t0 = time.perf_counter()
                torch.mm(self.a, self.b, out=self.c)  # allocates nothing: a timed call's peak memory is its own
                _sync(self.device)
                best = min(best, time.perf_counter() - t0)
        return 2.0 * self.n**3 / best


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int | None = None, repeats: int = 5) -> float:
    """The machine's dense matmul rate, FLOP/s: the best of ``repeats`` (n, n) @ (n, n) products."""
    return MatmulProbe(device, dtype, n, repeats)()


def _freeze(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    return params


def step_flops_by_part(
    model: CAVGA, disc: Discriminator, cfg: RunConfig, x: Tensor, labels: Tensor
) -> dict[str, float]:
    """FLOPs per image of each part of a training step on batch ``x`` (B, 3, S, S) (module doc).

    Runs forward and backward passes but no optimiser step; gradients it leaves are cleared."""
    model.train()
    disc.train()
    b = x.shape[0]
    normal = labels == 0  # (B,)
    with torch.no_grad():
        enc0 = model.encode(x)
        x_hat0 = model.decode(enc0.z)  # (B, 3, S, S)

    def encoder() -> None:
        enc = model.encode(x)
        out = enc.mu.sum() + enc.logvar.sum()
        if cfg.model.weakly_supervised:
            out = out + model.classify(enc.z).sum()  # C counts with the encoder: it reads z
        out.backward()

    def decoder() -> None:
        z = enc0.z.detach().requires_grad_(True)
        model.decode(z).sum().backward()

    def discriminator() -> None:
        xh = x_hat0.detach()
        adversarial_d_loss(disc(x[normal]), disc(xh[normal])).backward()
        frozen = _freeze(disc)  # G's step: D's input gradient only (train_step)
        try:
            adversarial_g_loss(disc(xh.requires_grad_(True)[normal])).backward()
        finally:
            for p in frozen:
                p.requires_grad_(True)

    leaf = enc0.features.detach().requires_grad_(True)

    def feature_map() -> Tensor:
        return leaf * 1.0  # (B, K, h, w) not a leaf, as in the step (the counter's hooks need that)

    def latent_only() -> None:
        enc = model.latent(feature_map())
        out = enc.mu.sum() + enc.logvar.sum()
        if cfg.model.weakly_supervised:
            out = out + model.classify(enc.z).sum()
        out.backward()

    def with_gradcam() -> None:
        f = feature_map()
        enc = model.latent(f)
        out = enc.mu.sum() + enc.logvar.sum()
        scale = model.attention_scale()
        if cfg.model.weakly_supervised:
            logits = model.classify(enc.z)  # (B, 2): C's BCE reads the sampled z
            mean_logits = model.classify(enc.score_mu)  # (B, 2): the class maps read z's mean (step.generator_loss)
            a_n, a_a = class_maps(f, mean_logits, scale)
            out = out + logits.sum() + complementary_guided_attention_loss(a_n, a_a, mean_logits, labels)
        else:
            cam = unsupervised_cam_raw(enc, model.cfg.attention_score)  # (B, 1, h, w)
            out = out + attention_expansion_loss(normalise_cam(cam, scale))
        out.backward()

    parts = {
        "encoder": count_flops(encoder),
        "decoder": count_flops(decoder),
        "discriminator": count_flops(discriminator) if cfg.loss.w_adv > 0 and bool(normal.any()) else 0,
        "gradcam": count_flops(with_gradcam) - count_flops(latent_only),
    }
    model.zero_grad(set_to_none=True)
    disc.zero_grad(set_to_none=True)
    return {k: v / b for k, v in parts.items()}
