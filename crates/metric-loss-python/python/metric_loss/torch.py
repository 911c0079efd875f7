"""PyTorch adapter: every loss of ``metric_loss`` as an ``nn.Module``, with the Rust
analytic gradient behind a ``torch.autograd.Function``.

>>> import torch, metric_loss.torch as mlt
>>> loss_fn = mlt.TripletLoss(margin=0.5)         # TF Similarity's keyword arguments
>>> x = torch.randn(8, 4, requires_grad=True)
>>> loss = loss_fn(x, torch.arange(8) % 4)        # (embeddings, labels), like PML
>>> loss.backward()

Tensors may live on any device and be float16, bfloat16, float32 or float64: the loss is
computed on the host in float32 (float64 stays float64), and the loss and the gradient come
back on the input's device and dtype. The module returns the reduced loss (a 0-d tensor;
the sum with ``reduction="none"``);
``per_example_loss`` of the last call is kept on the module for logging.

Scale-out with ``torch.distributed``: :func:`gather_keys` all-gathers every rank's
embeddings (with their gradient) and labels, the local batch first, so that each rank
mines its queries against the whole batch::

    keys, key_labels = gather_keys(x, y)
    loss = loss_fn(x, y, keys=keys, key_labels=key_labels)   # local queries x all keys

Each rank's loss is the mean over its own queries, so the sum over ranks of the gradients
is ``world_size`` times the gradient of the single-process loss on the whole batch; DDP's
gradient averaging divides by ``world_size`` and so gives the single-process gradient.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import torch

import metric_loss as _ml

__all__ = ["MetricLossModule", "gather_keys", "from_config"] + [
    name for name in ("TripletLoss", "PNLoss", "MultiSimilarityLoss", "CircleLoss", "SoftNearestNeighborLoss", "XBM")
]


def _host(t: torch.Tensor) -> np.ndarray:
    """A float tensor as a host NumPy array: float64 kept, every other float as float32."""
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    return t.detach().to(device="cpu", dtype=dtype).contiguous().numpy()


def _host_labels(t: Any) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"labels must have an integer dtype, got {t.dtype}")
        return t.detach().to(device="cpu", dtype=torch.int64).contiguous().numpy()
    return np.asarray(t)


class _MetricLossFunction(torch.autograd.Function):
    """loss(embeddings, keys) -> reduced loss, with the Rust gradient for both."""

    @staticmethod
    def forward(ctx, loss, labels, embeddings, sample_weight, keys, key_labels, remove_diagonal):
        weights = sample_weight
        if isinstance(weights, torch.Tensor):
            weights = weights.detach().to(device="cpu", dtype=torch.float64).numpy()
        want = ctx.needs_input_grad[2] or (keys is not None and ctx.needs_input_grad[4])
        result = loss.compute(
            labels,
            _host(embeddings),
            weights,
            None if keys is None else _host(keys),
            key_labels,
            remove_diagonal=remove_diagonal,
            gradient=want,
        )
        like = dict(device=embeddings.device, dtype=embeddings.dtype)
        ctx.grad = None if result.grad is None else torch.from_numpy(result.grad).to(**like)
        ctx.grad_keys = None
        if result.grad_keys is not None:
            ctx.grad_keys = torch.from_numpy(result.grad_keys).to(device=keys.device, dtype=keys.dtype)
        per_example = torch.from_numpy(result.per_example_loss).to(**like)
        ctx.mark_non_differentiable(per_example)
        return torch.tensor(result.loss, **like), per_example

    @staticmethod
    def backward(ctx, grad_output, _per_example):
        grad = None if ctx.grad is None else grad_output * ctx.grad
        grad_keys = None if ctx.grad_keys is None else grad_output.to(ctx.grad_keys.dtype) * ctx.grad_keys
        return None, None, grad, None, grad_keys, None, None


class MetricLossModule(torch.nn.Module):
    """An ``nn.Module`` around a ``metric_loss`` loss: ``forward(embeddings, labels,
    sample_weight=None, keys=None, key_labels=None, remove_diagonal=True)``."""

    def __init__(self, loss: _ml.MetricLoss) -> None:
        super().__init__()
        self.loss = loss
        self.per_example_loss: Optional[torch.Tensor] = None

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: Any,
        sample_weight: Any = None,
        keys: Optional[torch.Tensor] = None,
        key_labels: Any = None,
        remove_diagonal: bool = True,
    ) -> torch.Tensor:
        if not isinstance(embeddings, torch.Tensor) or not embeddings.is_floating_point():
            raise TypeError(f"embeddings must be a floating-point tensor, got {getattr(embeddings, 'dtype', type(embeddings))}")
        kl = None if key_labels is None else _host_labels(key_labels)
        loss, per_example = _MetricLossFunction.apply(
            self.loss, _host_labels(labels), embeddings, sample_weight, keys, kl, remove_diagonal
        )
        self.per_example_loss = per_example
        return loss

    def get_config(self) -> dict:
        return self.loss.get_config()

    def extra_repr(self) -> str:
        return repr(self.loss)


TripletLoss, PNLoss, MultiSimilarityLoss, CircleLoss, SoftNearestNeighborLoss, XBM = _ml._adapter_classes(
    MetricLossModule,
    __name__,
    ("TripletLoss", "PNLoss", "MultiSimilarityLoss", "CircleLoss", "SoftNearestNeighborLoss", "XBM"),
)


def from_config(config: dict) -> MetricLossModule:
    """Any registered loss, from its Keras-shaped config, as a module."""
    return MetricLossModule(_ml.from_config(config))


def gather_keys(embeddings: torch.Tensor, labels: torch.Tensor, group=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """All ranks' embeddings (differentiable) and labels, this rank's first.

    The local batch first is what the losses' diagonal rule expects (pair (i, i) is the
    query itself); the gradient that reaches the gathered keys flows back to the rank that
    owns them. Every rank must pass a batch of the same shape.
    """
    import torch.distributed as dist
    from torch.distributed.nn.functional import all_gather

    world = dist.get_world_size(group)
    rank = dist.get_rank(group)
    xs = all_gather(embeddings, group=group)
    ys = [torch.empty_like(labels) for _ in range(world)]
    dist.all_gather(ys, labels.contiguous(), group=group)
    order = [rank] + [r for r in range(world) if r != rank]
    return torch.cat([xs[r] for r in order]), torch.cat([ys[r] for r in order])
