"""TF Similarity's metric-learning losses, computed in Rust, on NumPy arrays.

>>> import numpy as np, metric_loss
>>> loss = metric_loss.TripletLoss()            # cosine, hard / semi-hard, margin 1.0
>>> y = np.array([0, 0, 1, 1])
>>> x = np.array([[1, 0], [0.8, 0.6], [0, 1], [-0.6, -0.8]], dtype=np.float32)
>>> round(loss(y, x), 4)
0.91
>>> result = loss.compute(y, x)                 # .loss, .per_example_loss, .grad
>>> result.grad.dtype, result.grad.shape
(dtype('float32'), (4, 2))
>>> metric_loss.from_config({"class_name": "TripletLoss", "config": loss.get_config()})
TripletLoss(distance='cosine', ..., negative_mining_strategy='semi-hard', ...)

Every loss is a class named as in TF Similarity (``TripletLoss``, ``PNLoss``,
``MultiSimilarityLoss``, ``CircleLoss``, ``SoftNearestNeighborLoss``, ``XBM``) taking TF
Similarity's keyword arguments; pytorch-metric-learning's ``ContrastiveLoss``, ``NTXentLoss``
and ``SupConLoss`` take PML's, and so do its losses that own a learnable matrix
(``ArcFaceLoss``, ``CosFaceLoss``, ``SubCenterArcFaceLoss``, ``ProxyAnchorLoss``: a
``parameters`` array to get and set, ``grad_parameters`` in every result). The two-view losses (``MultiNegativesRankLoss``, ``SimCLRLoss``,
``SimSiamLoss``, ``Barlow``, ``VicReg``) are called on two views instead of labels:
``loss(view_a, view_b)``. Embeddings are ``float32`` or ``float64`` (``float16`` is
computed in ``float32``) and are read in place when C-contiguous; labels have an integer
dtype. Invalid input raises ``ValueError`` or ``TypeError`` with the Rust error's message.
The GIL is released while a loss runs.

Framework adapters: ``metric_loss.torch`` (PyTorch) and ``metric_loss.keras``
(``tf.keras``), importable when their framework is installed.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Union

import numpy as np

from . import _native

__all__ = [
    "MetricLoss",
    "LossResult",
    "TripletLoss",
    "PNLoss",
    "MultiSimilarityLoss",
    "CircleLoss",
    "SoftNearestNeighborLoss",
    "XBM",
    "ContrastiveLoss",
    "NTXentLoss",
    "SupConLoss",
    "LearnableLoss",
    "LearnableResult",
    "ArcFaceLoss",
    "CosFaceLoss",
    "SubCenterArcFaceLoss",
    "ProxyAnchorLoss",
    "TwoViewLoss",
    "ViewsResult",
    "MultiNegativesRankLoss",
    "SimCLRLoss",
    "SimSiamLoss",
    "Barlow",
    "VicReg",
    "from_config",
    "load",
    "serialize",
    "registered_names",
]

try:  # pragma: no cover - only absent when run from a source tree
    from importlib.metadata import version as _version

    __version__ = _version("metric-loss")
except Exception:  # noqa: BLE001
    __version__ = "0.0.0"

ArrayLike = Any


class LossResult:
    """One evaluation: ``loss`` (float), ``per_example_loss`` (n,), ``grad`` (n, d) and,
    when keys were given, ``grad_keys`` (m, d); arrays in the embeddings' dtype.

    ``grad`` is the gradient of ``loss`` (the reduced loss) with respect to ``y_pred``.
    """

    __slots__ = ("loss", "per_example_loss", "grad", "grad_keys")

    def __init__(self, loss, per_example_loss, grad, grad_keys):
        self.loss: float = loss
        self.per_example_loss: np.ndarray = per_example_loss
        self.grad: Optional[np.ndarray] = grad
        self.grad_keys: Optional[np.ndarray] = grad_keys

    def __repr__(self) -> str:
        shapes = {
            k: getattr(self, k).shape
            for k in ("per_example_loss", "grad", "grad_keys")
            if getattr(self, k) is not None
        }
        return f"LossResult(loss={self.loss!r}, shapes={shapes})"


def _labels(y: ArrayLike, what: str) -> np.ndarray:
    """Labels as contiguous int64: an integer dtype, shape (n,) or Keras's (n, 1)."""
    a = np.asarray(y)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{what} must have an integer dtype, got {a.dtype}")
    if a.ndim == 2 and a.shape[1] == 1:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise ValueError(f"{what} must have shape (n,) or (n, 1), got {a.shape}")
    if a.dtype == np.uint64 and a.size and int(a.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{what} holds {int(a.max())}, beyond the int64 range labels use")
    return np.ascontiguousarray(a, dtype=np.int64)


def _float_dtype(a: np.ndarray, what: str) -> np.dtype:
    """The native float dtype a floating array is computed in (float16 -> float32)."""
    if a.dtype.kind != "f" or a.dtype.itemsize not in (2, 4, 8):
        raise TypeError(
            f"{what} must have dtype float32 or float64 (float16 is computed in float32), "
            f"got {a.dtype}"
        )
    return np.dtype(np.float64) if a.dtype.itemsize == 8 else np.dtype(np.float32)


def _embeddings(x: ArrayLike, what: str) -> np.ndarray:
    """A C-contiguous native-endian float32/float64 matrix; no copy when it already is."""
    a = np.asarray(x)
    dtype = _float_dtype(a, what)
    if a.ndim != 2:
        raise ValueError(f"{what} must be 2-d (examples x dimensions), got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=dtype)


def _weights(w: ArrayLike, dtype: np.dtype) -> Union[None, float, np.ndarray]:
    """None, a scalar weight, or one weight per example ((n,) or Keras's (n, 1))."""
    if w is None:
        return None
    a = np.asarray(w)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"sample_weight must be numeric, got {a.dtype}")
    if a.ndim == 0:
        return float(a)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise ValueError(f"sample_weight must have shape (n,) or (n, 1), got {a.shape}")
    return np.ascontiguousarray(a, dtype=dtype)


def _batch(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike):
    """A labelled call's inputs, normalised: ``(labels, y_pred as given, embeddings,
    weights)``; an empty batch is refused."""
    labels = _labels(y_true, "y_true")
    a = np.asarray(y_pred)
    x = _embeddings(a, "y_pred")
    if x.size == 0:
        # The Rust losses define an empty batch as a loss of 0; from Python it is
        # almost always a slicing mistake, so it is refused.
        raise ValueError(f"y_pred is empty (shape {x.shape}): a batch needs at least one example and one dimension")
    return labels, a, x, _weights(sample_weight, x.dtype)


def _as_input_dtype(dtype: np.dtype, *arrays):
    """The results in float16 when the input was (it is computed in float32)."""
    if dtype != np.float16:
        return arrays
    return tuple(None if r is None else r.astype(np.float16) for r in arrays)


def _to_json(value: Dict[str, Any]) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError as e:
        raise ValueError(f"config numbers must be finite: {e}") from None
    except TypeError as e:
        raise TypeError(f"config values must be JSON values: {e}") from None


class MetricLoss:
    """A loss computed by the Rust crates; subclasses are named as in TF Similarity.

    Call it like a Keras loss, ``loss(y_true, y_pred, sample_weight=None) -> float``, or use
    :meth:`compute` for the gradient.
    """

    class_name: str = ""
    _native: _native.NativeLoss

    def __init__(self, **config: Any) -> None:
        self._set_config(config)

    def _set_config(self, config: Dict[str, Any]) -> None:
        if not type(self).class_name:
            raise TypeError("MetricLoss is abstract: use a loss class or metric_loss.from_config")
        text = _to_json({"class_name": type(self).class_name, "config": config})
        self._native = _native.NativeLoss.from_json(text)

    @classmethod
    def _wrap(cls, native: _native.NativeLoss) -> "MetricLoss":
        obj = cls.__new__(cls)
        obj._native = native
        return obj

    @property
    def name(self) -> str:
        """The loss's name (Keras's ``name``)."""
        return self._native.name

    def __call__(self, y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike = None):
        """The reduced loss, as a Python float (no gradient is computed). With
        ``reduction="none"`` it is Keras's: the weighted per-example losses, an array."""
        result = self.compute(y_true, y_pred, sample_weight, gradient=False)
        if self._reduction() != "none":
            return result.loss
        per_example = result.per_example_loss
        if sample_weight is None:
            return per_example
        return per_example * np.asarray(sample_weight, dtype=per_example.dtype).reshape(-1)

    def _reduction(self) -> str:
        # Read once: get_config goes through JSON.
        if not hasattr(self, "_cached_reduction"):
            self._cached_reduction = self.get_config().get("reduction", "auto")
        return self._cached_reduction

    def compute(
        self,
        y_true: ArrayLike,
        y_pred: ArrayLike,
        sample_weight: ArrayLike = None,
        keys: ArrayLike = None,
        key_labels: ArrayLike = None,
        *,
        remove_diagonal: bool = True,
        gradient: bool = True,
    ) -> LossResult:
        """Evaluates the loss and its gradient.

        ``y_true``: integer labels (n,) or (n, 1). ``y_pred``: embeddings (n, d), float32 or
        float64. ``sample_weight``: None, a number, or (n,). ``keys`` / ``key_labels``: a
        separate key set (m, d) / (m,) to mine against (a memory bank); pair (i, i) is not a
        positive unless ``remove_diagonal=False`` (right when the keys start with the
        queries, as a cross-batch memory's do). ``gradient=False`` skips the gradient.
        """
        labels, a, x, weights = _batch(y_true, y_pred, sample_weight)
        k = kl = None
        if keys is not None or key_labels is not None:
            if keys is None or key_labels is None:
                raise ValueError("keys and key_labels go together: give both or neither")
            k = np.ascontiguousarray(np.asarray(keys), dtype=_float_dtype(np.asarray(keys), "keys"))
            if k.dtype != x.dtype:
                raise TypeError(f"keys have dtype {k.dtype} but y_pred has {x.dtype}; they must match")
            if k.ndim != 2:
                raise ValueError(f"keys must be 2-d (keys x dimensions), got shape {k.shape}")
            kl = _labels(key_labels, "key_labels")
        loss, per_example, grad, grad_keys = self._native.compute(
            labels, x, weights, k, kl, remove_diagonal, gradient
        )
        per_example, grad, grad_keys = _as_input_dtype(a.dtype, per_example, grad, grad_keys)
        return LossResult(loss, per_example, grad, grad_keys)

    def reset_state(self) -> None:
        """Forgets state kept between calls (``XBM``'s memory); others do nothing."""
        self._native.reset_state()

    def get_config(self) -> Dict[str, Any]:
        """The constructor arguments, every key filled in, as TF Similarity's ``get_config``."""
        return serialize(self)["config"]

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "MetricLoss":
        """The loss a ``get_config`` dict describes. A Keras-shaped dict
        (``{"class_name": ..., "config": {...}}``) is accepted too."""
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        if cls is MetricLoss or (set(config) >= {"class_name", "config"} and set(config) <= _KERAS_KEYS):
            loss = from_config(config)
            if cls is not MetricLoss and not isinstance(loss, cls):
                raise ValueError(
                    f"config is a {type(loss).__name__}'s, not a {cls.__name__}'s"
                )
            return loss
        return cls._wrap(
            _native.NativeLoss.from_json(_to_json({"class_name": cls.class_name, "config": config}))
        )

    def __reduce__(self):
        # Pickling (multiprocessing, torch.distributed) goes through the config.
        return (from_config, (serialize(self),))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


_KERAS_KEYS = {"class_name", "config", "module", "registered_name"}


class TripletLoss(MetricLoss):
    """TF Similarity's ``TripletLoss``.

    ``distance``: ``"cosine"``, ``"euclidean"`` / ``"l2"``, ``"squared_euclidean"``,
    ``"manhattan"`` / ``"l1"``, ``"inner_product"``, ``"snr"``.
    ``positive_mining_strategy``: ``"easy"`` or ``"hard"``; ``negative_mining_strategy``:
    ``"easy"``, ``"hard"`` or ``"semi-hard"`` (anything else is a ``ValueError``).
    ``soft_margin=True`` uses ln(1 + e^x) instead of the hinge; a ``margin`` other than 1.0
    with it is a ``ValueError`` (``margin=None`` also means soft margin).
    Extra keyword arguments: ``reduction`` (``"auto"``, ``"sum_over_batch_size"``,
    ``"sum"``, ``"none"``), ``exclude_degenerate_anchors``, ``stable_soft_margin``.
    """

    class_name = "TripletLoss"

    def __init__(
        self,
        distance: str = "cosine",
        positive_mining_strategy: str = "hard",
        negative_mining_strategy: str = "semi-hard",
        soft_margin: bool = False,
        margin: Optional[float] = 1.0,
        name: str = "TripletLoss",
        **kwargs: Any,
    ) -> None:
        self._set_config(
            dict(
                distance=distance,
                positive_mining_strategy=positive_mining_strategy,
                negative_mining_strategy=negative_mining_strategy,
                soft_margin=soft_margin,
                margin=margin,
                name=name,
                **kwargs,
            )
        )


class PNLoss(MetricLoss):
    """TF Similarity's ``PNLoss``; keyword arguments as TF Similarity's (``distance``,
    ``positive_mining_strategy``, ``negative_mining_strategy``, ``margin`` (None: soft),
    ``name``, ``reduction``)."""

    class_name = "PNLoss"


class MultiSimilarityLoss(MetricLoss):
    """TF Similarity's ``MultiSimilarityLoss`` (``distance``, ``alpha``, ``beta``,
    ``epsilon``, ``lmda``, ``center``, ``name``, ``reduction``)."""

    class_name = "MultiSimilarityLoss"


class CircleLoss(MetricLoss):
    """TF Similarity's ``CircleLoss`` (``distance``, ``gamma``, ``margin``, ``name``,
    ``reduction``)."""

    class_name = "CircleLoss"


class SoftNearestNeighborLoss(MetricLoss):
    """TF Similarity's ``SoftNearestNeighborLoss`` (``distance``, ``temperature``,
    ``name``, ``reduction``)."""

    class_name = "SoftNearestNeighborLoss"


class XBM(MetricLoss):
    """TF Similarity's ``XBM`` (cross-batch memory) around another loss.

    ``loss`` is a loss object of this package or its Keras-shaped config dict;
    ``memory_size`` is required. The memory is state: :meth:`reset_state` empties it, and a
    loss read from a config starts empty.
    """

    class_name = "XBM"

    def __init__(self, loss: Union[MetricLoss, Dict[str, Any]], memory_size: int, **kwargs: Any) -> None:
        if isinstance(loss, MetricLoss):
            loss = serialize(loss)
        self._set_config(dict(loss=loss, memory_size=memory_size, **kwargs))


class ContrastiveLoss(MetricLoss):
    """pytorch-metric-learning's ``ContrastiveLoss`` (``pos_margin``, ``neg_margin``,
    ``distance``, ``reducer`` as PML's ``{"class_name", "config"}`` dicts, ``name``)."""

    class_name = "ContrastiveLoss"


class NTXentLoss(MetricLoss):
    """pytorch-metric-learning's ``NTXentLoss`` (``temperature``, ``distance``, ``reducer``,
    ``name``)."""

    class_name = "NTXentLoss"


class SupConLoss(MetricLoss):
    """pytorch-metric-learning's ``SupConLoss`` (``temperature``, ``distance``, ``reducer``,
    ``name``)."""

    class_name = "SupConLoss"


class LearnableResult(LossResult):
    """One evaluation of a loss with learnable parameters: ``loss``, ``per_example_loss``,
    ``grad`` and ``grad_parameters``, the gradient with respect to the loss's
    ``parameters`` (their shape, the embeddings' dtype)."""

    __slots__ = ("grad_parameters",)

    def __init__(self, loss, per_example_loss, grad, grad_parameters):
        super().__init__(loss, per_example_loss, grad, None)
        self.grad_parameters: Optional[np.ndarray] = grad_parameters


class LearnableLoss(MetricLoss):
    """A loss that owns a learnable matrix (pytorch-metric-learning's classifier weights
    ``W`` or ``proxies``), drawn from ``seed`` with PML's distribution (not torch's random
    stream). Read and set it through ``parameters``; ``compute`` returns its gradient.

    >>> import numpy as np, metric_loss
    >>> loss = metric_loss.ArcFaceLoss(3, 2)
    >>> loss.parameters = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    >>> y = np.array([0, 0, 1, 2])
    >>> x = np.array([[1, 0], [0.8, 0.6], [0, 1], [-0.6, -0.8]], dtype=np.float32)
    >>> round(loss(y, x), 4)
    2.9573
    >>> loss.compute(y, x).grad_parameters.shape
    (2, 3)
    """

    def __init__(self, num_classes: Optional[int] = None, embedding_size: Optional[int] = None, **config: Any) -> None:
        for key, value in (("num_classes", num_classes), ("embedding_size", embedding_size)):
            if value is not None:
                config[key] = value
        self._set_config(config)

    @property
    def parameters(self) -> np.ndarray:
        """A float64 copy of the learnable matrix; assign an array of its shape to set it."""
        return self._native.read_parameters()

    @parameters.setter
    def parameters(self, values: ArrayLike) -> None:
        self._native.set_parameters(np.ascontiguousarray(values, dtype=np.float64))

    @property
    def parameter_shape(self) -> tuple:
        """``(name, rows, cols)`` of the learnable matrix."""
        return self._native.parameter_shape

    def compute(  # type: ignore[override]
        self,
        y_true: ArrayLike,
        y_pred: ArrayLike,
        sample_weight: ArrayLike = None,
        *,
        gradient: bool = True,
    ) -> LearnableResult:
        """Evaluates the loss, its gradient with respect to ``y_pred`` and to the
        parameters. ``y_true``: integer labels in ``[0, num_classes)``; ``y_pred``: (n,
        embedding_size), float32 or float64; ``sample_weight``: None, a number, or (n,)."""
        labels, a, x, weights = _batch(y_true, y_pred, sample_weight)
        loss, per_example, grad, grad_p = self._native.compute_learnable(labels, x, weights, gradient)
        per_example, grad, grad_p = _as_input_dtype(a.dtype, per_example, grad, grad_p)
        return LearnableResult(loss, per_example, grad, grad_p)

    def __reduce__(self):
        # The config draws the seed's matrix: the current values travel beside it.
        return (_learnable_from_config, (serialize(self), self.parameters))


def _learnable_from_config(config: Dict[str, Any], parameters: np.ndarray) -> LearnableLoss:
    loss = from_config(config)
    loss.parameters = parameters
    return loss


class ArcFaceLoss(LearnableLoss):
    """pytorch-metric-learning's ``ArcFaceLoss(num_classes, embedding_size, margin=28.6,
    scale=64)`` (margin in degrees; ``distance``, ``reducer``, ``seed``, ``name``)."""

    class_name = "ArcFaceLoss"


class CosFaceLoss(LearnableLoss):
    """pytorch-metric-learning's ``CosFaceLoss(num_classes, embedding_size, margin=0.35,
    scale=64)``."""

    class_name = "CosFaceLoss"


class SubCenterArcFaceLoss(LearnableLoss):
    """pytorch-metric-learning's ``SubCenterArcFaceLoss(num_classes=, embedding_size=,
    margin=28.6, scale=64, sub_centers=3)``: keyword arguments only, as in PML."""

    class_name = "SubCenterArcFaceLoss"

    def __init__(self, *, num_classes: Optional[int] = None, embedding_size: Optional[int] = None, **config: Any) -> None:
        super().__init__(num_classes, embedding_size, **config)


class ProxyAnchorLoss(LearnableLoss):
    """pytorch-metric-learning's ``ProxyAnchorLoss(num_classes, embedding_size, margin=0.1,
    alpha=32)`` (any PML distance; ``DivisorReducer`` by default)."""

    class_name = "ProxyAnchorLoss"


class TwoViewLoss(MetricLoss):
    """A loss on two views of the same examples, without labels: row i of ``view_a`` pairs
    with row i of ``view_b`` (TF Similarity's ``loss(za, zb)``).

    >>> import numpy as np, metric_loss
    >>> za = np.array([[1, 0], [0.8, 0.6], [0, 1]], dtype=np.float32)
    >>> zb = np.array([[0.8, 0.6], [0, 1], [-0.6, -0.8]], dtype=np.float32)
    >>> round(metric_loss.SimSiamLoss()(za, zb), 4)
    -0.099
    >>> metric_loss.SimSiamLoss().compute(za, zb).grad_b.shape
    (3, 2)
    """

    def __call__(self, view_a: ArrayLike, view_b: ArrayLike, sample_weight: ArrayLike = None):
        """The reduced loss, as a Python float (no gradient is computed). With
        ``reduction="none"`` it is Keras's: the weighted per-example losses, an array."""
        result = self.compute(view_a, view_b, sample_weight, gradient=False)
        if self._reduction() != "none":
            return result.loss
        per_example = result.per_example_loss
        if sample_weight is None:
            return per_example
        return per_example * np.asarray(sample_weight, dtype=per_example.dtype).reshape(-1)

    def compute(  # type: ignore[override]
        self,
        view_a: ArrayLike,
        view_b: ArrayLike,
        sample_weight: ArrayLike = None,
        *,
        gradient: bool = True,
    ) -> "ViewsResult":
        """Evaluates the loss and its gradients with respect to both views.

        ``view_a`` (n, d) and ``view_b`` (m, d): float32 or float64, the same dtype.
        ``sample_weight``: None, a number, or (n,). ``gradient=False`` skips the gradients.
        """
        a_in = np.asarray(view_a)
        a = _embeddings(a_in, "view_a")
        b = _embeddings(view_b, "view_b")
        if b.dtype != a.dtype:
            raise TypeError(f"view_b has dtype {b.dtype} but view_a has {a.dtype}; they must match")
        weights = _weights(sample_weight, a.dtype)
        loss, per_example, grad_a, grad_b = self._native.compute_views(a, b, weights, gradient)
        per_example, grad_a, grad_b = _as_input_dtype(a_in.dtype, per_example, grad_a, grad_b)
        return ViewsResult(loss, per_example, grad_a, grad_b)


class ViewsResult(LossResult):
    """A two-view evaluation: ``loss``, ``per_example_loss``, and the gradients ``grad_a``
    (same as ``grad``) and ``grad_b`` (same as ``grad_keys``)."""

    __slots__ = ()

    @property
    def grad_a(self) -> Optional[np.ndarray]:
        """The gradient with respect to ``view_a``."""
        return self.grad

    @property
    def grad_b(self) -> Optional[np.ndarray]:
        """The gradient with respect to ``view_b``."""
        return self.grad_keys


class MultiNegativesRankLoss(TwoViewLoss):
    """TF Similarity's ``MultiNegativesRankLoss`` (``distance``, ``scale``, ``name``,
    ``reduction``): queries in ``view_a``, their positive keys in ``view_b``."""

    class_name = "MultiNegativesRankLoss"


class SimCLRLoss(TwoViewLoss):
    """TF Similarity's ``SimCLRLoss`` (``temperature``, ``name``, ``reduction``)."""

    class_name = "SimCLRLoss"


class SimSiamLoss(TwoViewLoss):
    """TF Similarity's ``SimSiamLoss`` (``projection_type``, ``margin``, ``name``,
    ``reduction``): projector outputs in ``view_a``, predictor outputs in ``view_b``."""

    class_name = "SimSiamLoss"


class Barlow(TwoViewLoss):
    """TF Similarity's ``Barlow`` (``lambda_``, ``margin``, ``name``, ``reduction``)."""

    class_name = "Barlow"


class VicReg(TwoViewLoss):
    """TF Similarity's ``VicReg`` (``std_const``, ``lambda_``, ``mu``, ``nu``, ``name``,
    ``reduction``)."""

    class_name = "VicReg"


_CLASSES = {
    cls.class_name: cls
    for cls in (
        TripletLoss,
        PNLoss,
        MultiSimilarityLoss,
        CircleLoss,
        SoftNearestNeighborLoss,
        XBM,
        ContrastiveLoss,
        NTXentLoss,
        SupConLoss,
        ArcFaceLoss,
        CosFaceLoss,
        SubCenterArcFaceLoss,
        ProxyAnchorLoss,
        MultiNegativesRankLoss,
        SimCLRLoss,
        SimSiamLoss,
        Barlow,
        VicReg,
    )
}


def _from_native(native: _native.NativeLoss) -> MetricLoss:
    class_name = json.loads(native.config_json())["class_name"]
    cls = _CLASSES.get(class_name)
    if cls is None:
        # A loss registered in Rust that has no Python class of its own.
        cls = type(class_name, (MetricLoss,), {"class_name": class_name})
        _CLASSES[class_name] = cls
    return cls._wrap(native)


def _adapter_classes(adapter: type, module: str, names: tuple) -> tuple:
    """For a framework adapter: one subclass of ``adapter`` per loss name, whose constructor
    and ``from_config`` take that loss's arguments and hand the loss to
    ``adapter.__init__``."""

    def make(name: str) -> type:
        base = _CLASSES[name]

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            adapter.__init__(self, base(*args, **kwargs))

        def from_config(cls, config: Dict[str, Any]):
            obj = cls.__new__(cls)
            adapter.__init__(obj, base.from_config(config))
            return obj

        doc = f"TF Similarity's ``{name}``; the constructor takes ``metric_loss.{name}``'s arguments."
        attrs = {"__init__": __init__, "from_config": classmethod(from_config), "__doc__": doc, "__module__": module}
        return type(name, (adapter,), attrs)

    return tuple(make(name) for name in names)


def from_config(config: Dict[str, Any]) -> MetricLoss:
    """Any registered loss from its Keras-shaped config, ``{"class_name": ..., "config":
    {...}}`` (the dict ``tf.keras.losses.serialize`` writes for a TF Similarity loss,
    ``"Similarity>TripletLoss"`` included)."""
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    return _from_native(_native.NativeLoss.from_json(_to_json(config)))


def load(path: Union[str, "os.PathLike[str]"]) -> MetricLoss:
    """Any registered loss from a ``.json``, ``.toml``, ``.yaml`` or ``.yml`` config file."""
    return _from_native(_native.NativeLoss.load(os.fspath(path)))


def serialize(loss: MetricLoss) -> Dict[str, Any]:
    """The loss's Keras-shaped config, ``{"class_name": ..., "config": {...}}``."""
    return json.loads(loss._native.config_json())


def registered_names() -> list:
    """Every class name a config may use."""
    return list(_native.registered_names())
