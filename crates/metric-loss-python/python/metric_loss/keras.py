"""Keras adapter (``tf.keras``, which TF Similarity runs on): every stateless loss of
``metric_loss`` as a ``tf.keras.losses.Loss`` with the Rust gradient (``tf.custom_gradient``).

>>> import metric_loss.keras
>>> model.compile(optimizer="adam", loss=metric_loss.keras.TripletLoss())  # doctest: +SKIP

``call(y_true, y_pred)`` returns the per-example losses, so Keras applies the sample weights
and the reduction (``reduction=`` in the constructor, ``"auto"`` by default) exactly as for
TF Similarity's losses. The backward pass weights each example's gradient by the upstream
gradient of its loss, computed by the same Rust loss. Labels are cast to integers (as TF
Similarity does); ``float16`` embeddings (mixed precision) are computed in ``float32``.
``XBM`` is not offered here: its memory would be updated by both passes.
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np
import tensorflow as tf

import metric_loss as _ml

__all__ = ["KerasMetricLoss", "TripletLoss", "PNLoss", "MultiSimilarityLoss", "CircleLoss", "SoftNearestNeighborLoss", "from_config"]


class KerasMetricLoss(tf.keras.losses.Loss):
    """A ``tf.keras`` loss around a ``metric_loss`` loss (give it the loss object)."""

    def __init__(self, loss: _ml.MetricLoss) -> None:
        if isinstance(loss, _ml.XBM):
            raise TypeError("XBM keeps a memory across calls and has no Keras adapter; use metric_loss.XBM")
        config = loss.get_config()
        super().__init__(reduction=config.get("reduction", "auto"), name=config.get("name"))
        self.loss = loss
        # The backward pass: the upstream gradient as sample weights, summed.
        class_name = _ml.serialize(loss)["class_name"]
        self._weighted = _ml.from_config({"class_name": class_name, "config": dict(config, reduction="sum")})

    def call(self, y_true, y_pred):
        y_pred = tf.convert_to_tensor(y_pred)
        labels = tf.cast(tf.reshape(y_true, [-1]), tf.int64)
        forward, weighted = self.loss, self._weighted

        @tf.custom_gradient
        def per_example(x):
            def values(y, e):
                return forward.compute(y, e, gradient=False).per_example_loss.astype(e.dtype)

            out = tf.numpy_function(values, [labels, x], x.dtype, stateful=False)
            out.set_shape(x.shape[:1])

            def grad(upstream):
                def vjp(y, e, w):
                    return weighted.compute(y, e, w.astype(np.float64)).grad.astype(e.dtype)

                g = tf.numpy_function(vjp, [labels, x, upstream], x.dtype, stateful=False)
                g.set_shape(x.shape)
                return g

            return out, grad

        return per_example(y_pred)

    def get_config(self) -> Dict[str, Any]:
        return self.loss.get_config()


TripletLoss, PNLoss, MultiSimilarityLoss, CircleLoss, SoftNearestNeighborLoss = _ml._adapter_classes(
    KerasMetricLoss,
    __name__,
    ("TripletLoss", "PNLoss", "MultiSimilarityLoss", "CircleLoss", "SoftNearestNeighborLoss"),
)


def from_config(config: Dict[str, Any]) -> KerasMetricLoss:
    """Any registered stateless loss, from its Keras-shaped config, as a Keras loss."""
    return KerasMetricLoss(_ml.from_config(config))
