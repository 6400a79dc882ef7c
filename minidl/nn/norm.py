"""Normalisation layers: BatchNorm2d and LocalResponseNorm."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from ..tensor import Tensor
from . import init
from .module import Module
from .parameter import Parameter


class BatchNorm2d(Module):
    """Per-channel batch normalisation of x (N, C, H, W) -> (N, C, H, W).

    Training: normalise with the batch's mean and (biased) variance over N, H, W, and update
    ``running_mean``/``running_var`` as ``r = (1 - momentum) * r + momentum * batch_stat`` (the
    variance with the unbiased estimate), PyTorch's convention (Keras's momentum is 1 - ours).
    ``momentum=None`` uses the cumulative average (momentum = 1 / num_batches_tracked).
    Evaluation: normalise with the running statistics.

    Parameters (``affine=True``): ``weight`` (C,) initialised to 1, ``bias`` (C,) to 0.
    Buffers: ``running_mean`` (C,) zeros, ``running_var`` (C,) ones, ``num_batches_tracked`` ().
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.empty(num_features, np.float32))
            self.bias = Parameter(np.empty(num_features, np.float32))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, np.float32)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, np.float32)))
            self.register_buffer("num_batches_tracked", Tensor(np.zeros((), np.int64)))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """Running mean 0, variance 1, no batch tracked (PyTorch's name)."""
        if self.track_running_stats:
            init.zeros_(self.running_mean)
            init.ones_(self.running_var)
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return F.batch_norm(x, **self._batch_norm_args())

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(
                f"BatchNorm2d({self.num_features}) expects input (N, {self.num_features}, H, W), "
                f"got shape {x.shape}"
            )

    def _batch_norm_args(self) -> dict[str, Any]:
        """``F.batch_norm``'s arguments (all but ``x``), after counting the batch in
        ``num_batches_tracked`` when training. ``forward`` and the fused paths of
        ``minidl.nn._fused`` all start here, so they keep the statistics alike."""
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked.item())
        # without running statistics, evaluation normalises with the batch's statistics too
        track = self.track_running_stats
        return {
            "running_mean": self.running_mean.data if track else None,
            "running_var": self.running_var.data if track else None,
            "weight": self.weight,
            "bias": self.bias,
            "training": self.training or not track,
            "momentum": momentum,
            "eps": self.eps,
        }

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


class LocalResponseNorm(Module):
    """Normalise each activation by its neighbours across ``size`` channels (AlexNet, GoogLeNet).

    b_c = a_c / (k + alpha / size * sum_{c' near c} a_{c'}^2) ** beta, x (N, C, H, W).
    PyTorch's convention: alpha is divided by ``size`` (Caffe's ACROSS_CHANNELS does the same;
    Chainer and the TensorFlow op do not, so their alpha is ours / size). No parameters.
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: Tensor) -> Tensor:
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
