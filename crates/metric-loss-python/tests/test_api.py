"""The Python API: TF Similarity's constructor and errors, configs and their round trips,
every class of bad input, dtypes and layouts, key sets, threads."""

import json
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest

import metric_loss
from conformance import ROOT

LOSSES = {
    "TripletLoss": {},
    "PNLoss": {},
    "MultiSimilarityLoss": {},
    "CircleLoss": {},
    "SoftNearestNeighborLoss": {},
    "XBM": {"loss": {"class_name": "TripletLoss"}, "memory_size": 16},
}


def batch(n=8, d=4, classes=4, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.arange(n) % classes, x.astype(dtype)


def test_module_docstring_examples_run():
    import doctest

    assert doctest.testmod(metric_loss, optionflags=doctest.ELLIPSIS).failed == 0


# --- the TF Similarity constructor --------------------------------------------------------


def test_triplet_defaults_are_tf_similarity_s():
    config = metric_loss.TripletLoss().get_config()
    assert {k: config[k] for k in ("distance", "positive_mining_strategy", "negative_mining_strategy", "soft_margin", "margin", "name", "reduction")} == {
        "distance": "cosine",
        "positive_mining_strategy": "hard",
        "negative_mining_strategy": "semi-hard",
        "soft_margin": False,
        "margin": 1.0,
        "name": "TripletLoss",
        "reduction": "auto",
    }


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"positive_mining_strategy": "semi-hard"}, "invalid positive mining strategy"),
        ({"negative_mining_strategy": "hardest"}, "invalid negative mining strategy"),
        ({"soft_margin": True, "margin": 0.5}, "margin value is not used when soft_margin is set"),
        ({"distance": "chebyshev"}, "unknown distance"),
        ({"reduction": "mean"}, "unknown reduction"),
    ],
)
def test_triplet_invalid_arguments_are_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        metric_loss.TripletLoss(**kwargs)


def test_soft_margin_spellings_agree():
    y, x = batch()
    a = metric_loss.TripletLoss(soft_margin=True).compute(y, x)
    b = metric_loss.TripletLoss(margin=None).compute(y, x)
    assert a.loss == b.loss and np.array_equal(a.grad, b.grad)


def test_unknown_keyword_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match='unknown key "marginn"'):
        metric_loss.TripletLoss(marginn=0.1)
    with pytest.raises(TypeError, match="wrong type"):
        metric_loss.CircleLoss(gamma="large")


def test_every_registered_loss_has_its_class():
    for name in metric_loss.registered_names():
        cls = getattr(metric_loss, name)
        assert issubclass(cls, metric_loss.MetricLoss) and cls.class_name == name
    assert set(LOSSES) <= set(metric_loss.registered_names())


# --- configs --------------------------------------------------------------------------------


@pytest.mark.parametrize("class_name", sorted(LOSSES))
def test_config_round_trips(class_name):
    cls = getattr(metric_loss, class_name)
    loss = cls(**LOSSES[class_name])
    config = loss.get_config()
    json.dumps(config)  # plain JSON values
    again = cls.from_config(config)
    assert type(again) is cls and again.get_config() == config
    wrapped = metric_loss.serialize(loss)
    assert wrapped == {"class_name": class_name, "config": config}
    assert metric_loss.from_config(wrapped).get_config() == config
    assert cls.from_config(wrapped).get_config() == config
    assert pickle.loads(pickle.dumps(loss)).get_config() == config
    y, x = batch()
    assert again(y, x) == pytest.approx(loss(y, x), rel=0, abs=0)


def test_tf_similarity_saved_dict_is_read():
    saved = {
        "module": "tensorflow_similarity.losses",
        "class_name": "Similarity>TripletLoss",
        "registered_name": "Similarity>TripletLoss",
        "config": {
            "reduction": "auto",
            "name": "triplet_loss",
            "distance": {
                "module": "tensorflow_similarity.distances",
                "class_name": "Similarity>CosineDistance",
                "config": {"name": "cosine"},
                "registered_name": "Similarity>CosineDistance",
            },
            "positive_mining_strategy": "hard",
            "negative_mining_strategy": "semi-hard",
            "margin": None,
        },
    }
    loss = metric_loss.from_config(saved)
    assert isinstance(loss, metric_loss.TripletLoss)
    assert loss.name == "triplet_loss"
    y, x = batch()
    assert loss(y, x) == metric_loss.TripletLoss(soft_margin=True, name="triplet_loss")(y, x)
    assert metric_loss.TripletLoss.from_config(saved).name == "triplet_loss"


def test_from_config_of_another_class_is_refused():
    with pytest.raises(ValueError, match="not a PNLoss"):
        metric_loss.PNLoss.from_config(metric_loss.serialize(metric_loss.TripletLoss()))


@pytest.mark.parametrize(
    "config, error, message",
    [
        ({"class_name": "NoSuchLoss", "config": {}}, ValueError, "unknown loss class_name"),
        ({"class_name": "TripletLoss", "config": {"bogus": 1}}, TypeError, 'unknown key "bogus"'),
        ({"class_name": "TripletLoss", "config": {"margin": "big"}}, TypeError, "wrong type"),
        ({"class_name": "TripletLoss", "config": {"margin": float("nan")}}, ValueError, "finite"),
        ({"class_name": "XBM", "config": {"loss": {"class_name": "TripletLoss"}}}, TypeError, "missing key"),
        ({"class_name": "TripletLoss", "config": {"margin": object()}}, TypeError, "JSON"),
    ],
)
def test_bad_configs(config, error, message):
    with pytest.raises(error, match=message):
        metric_loss.from_config(config)


def test_from_config_needs_a_dict():
    with pytest.raises(TypeError):
        metric_loss.from_config("TripletLoss")
    with pytest.raises(TypeError):
        metric_loss.TripletLoss.from_config(["margin", 1.0])


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "examples/configs").iterdir() if p.suffix in (".json", ".toml", ".yaml", ".yml")), ids=lambda p: p.name)
def test_load_every_example_config(path):
    try:
        loss = metric_loss.load(path)
    except ValueError as e:
        # A config naming a loss that only an example binary registers.
        assert "unknown loss class_name" in str(e)
        return
    again = metric_loss.from_config(metric_loss.serialize(loss))
    assert again.get_config() == loss.get_config()


def test_load_writes_back_and_reads_again(tmp_path):
    loss = metric_loss.TripletLoss(distance="l2", negative_mining_strategy="hard", margin=0.25)
    path = tmp_path / "loss.json"
    path.write_text(json.dumps(metric_loss.serialize(loss)))
    assert metric_loss.load(path).get_config() == loss.get_config()
    assert metric_loss.load(str(path)).get_config()["distance"] == "euclidean"


def test_load_errors(tmp_path):
    with pytest.raises(OSError, match="cannot read config file"):
        metric_loss.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="syntax error"):
        metric_loss.load(bad)
    with pytest.raises(ValueError, match="cannot tell the config format"):
        metric_loss.load(tmp_path / "loss.ini")


# --- results --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_result_arrays_have_the_input_dtype(dtype):
    y, x = batch(dtype=dtype)
    r = metric_loss.TripletLoss().compute(y, x)
    assert isinstance(r.loss, float)
    assert r.per_example_loss.dtype == dtype and r.per_example_loss.shape == (8,)
    assert r.grad.dtype == dtype and r.grad.shape == (8, 4)
    assert r.grad_keys is None
    assert metric_loss.TripletLoss()(y, x) == pytest.approx(r.loss)


def test_float32_and_float64_agree():
    y, x = batch(n=32, d=8, dtype=np.float64)
    a = metric_loss.TripletLoss().compute(y, x)
    b = metric_loss.TripletLoss().compute(y, x.astype(np.float32))
    assert a.loss == pytest.approx(b.loss, rel=1e-5)
    np.testing.assert_allclose(a.grad, b.grad, atol=1e-5)


def test_gradient_matches_finite_differences():
    y, x = batch(n=8, d=3, dtype=np.float64, seed=3)
    loss = metric_loss.TripletLoss(distance="euclidean", margin=0.5)
    grad = loss.compute(y, x).grad
    h = 1e-6
    numeric = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (loss(y, up) - loss(y, down)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, atol=1e-6)


def test_sample_weight_forms():
    y, x = batch()
    loss = metric_loss.TripletLoss(soft_margin=True)
    w = np.linspace(0.5, 2.0, 8)
    per_example = loss.compute(y, x).per_example_loss
    assert loss(y, x, w) == pytest.approx(float(np.mean(per_example * w)), rel=1e-6)
    assert loss(y, x, w[:, None]) == loss(y, x, w)
    assert loss(y, x, 2.0) == pytest.approx(2 * loss(y, x), rel=1e-6)
    assert loss(y, x, np.ones(8, dtype=np.int32)) == loss(y, x)


def test_reduction_none_gives_keras_s_per_example_array():
    y, x = batch()
    w = np.linspace(0.5, 2.0, 8)
    loss = metric_loss.TripletLoss(soft_margin=True, reduction="none")
    per_example = loss.compute(y, x).per_example_loss
    np.testing.assert_array_equal(loss(y, x), per_example)
    np.testing.assert_allclose(loss(y, x, w), per_example * w.astype(np.float32), rtol=1e-6)
    # compute's .loss is then the sum, and .grad its gradient.
    assert loss.compute(y, x).loss == pytest.approx(float(per_example.sum()), rel=1e-6)


def test_keras_shaped_labels():
    y, x = batch()
    loss = metric_loss.TripletLoss()
    assert loss(y[:, None], x) == loss(y, x)
    for dtype in (np.int8, np.int32, np.uint16, np.uint64):
        assert loss(y.astype(dtype), x) == loss(y, x)


def test_key_set_splits_the_gradient():
    y, x = batch(n=12, d=5, classes=3, dtype=np.float64)
    loss = metric_loss.TripletLoss()
    whole = loss.compute(y, x)
    split = loss.compute(y, x, keys=x, key_labels=y)
    assert split.loss == pytest.approx(whole.loss, rel=1e-12)
    assert split.grad_keys.shape == (12, 5) and split.grad_keys.dtype == np.float64
    np.testing.assert_allclose(split.grad + split.grad_keys, whole.grad, atol=1e-12)


def test_memory_bank_keys_without_the_queries():
    y, x = batch(n=6, d=4, classes=3)
    ky, kx = batch(n=10, d=4, classes=3, seed=1)
    r = metric_loss.TripletLoss().compute(y, x, keys=kx, key_labels=ky, remove_diagonal=False)
    assert r.grad.shape == (6, 4) and r.grad_keys.shape == (10, 4)
    assert np.isfinite(r.loss)


def test_xbm_keeps_and_resets_its_memory():
    y, x = batch(n=8, classes=4)
    xbm = metric_loss.XBM(metric_loss.TripletLoss(), memory_size=32)
    first = xbm(y, x)
    y2, x2 = batch(n=8, classes=4, seed=5)
    second = xbm(y2, x2)
    xbm.reset_state()
    assert xbm(y2, x2) != second or first == second
    assert xbm.get_config()["loss"]["class_name"] == "TripletLoss"


# --- layouts --------------------------------------------------------------------------------


def test_contiguous_input_is_not_copied():
    # The Python layer hands a C-contiguous array over as it is; the native module then
    # borrows its buffer.
    _, x = batch()
    assert metric_loss._embeddings(x, "y_pred") is x
    y = np.arange(8, dtype=np.int64)
    assert metric_loss._labels(y, "y_true") is y


@pytest.mark.parametrize(
    "view",
    [
        lambda x: np.asfortranarray(x),
        lambda x: np.repeat(x, 2, axis=0)[::2],
        lambda x: np.ascontiguousarray(x.T).T,
        lambda x: x.astype(x.dtype.newbyteorder(">")),
        lambda x: np.pad(x, ((0, 0), (0, 3)))[:, :4],
    ],
    ids=["fortran", "row-strided", "transposed", "big-endian", "column-slice"],
)
def test_non_contiguous_views_give_the_same_answer(view):
    y, x = batch()
    v = view(x)
    assert not v.flags.c_contiguous or v.dtype.byteorder == ">"
    a, b = metric_loss.TripletLoss().compute(y, x), metric_loss.TripletLoss().compute(y, v)
    assert a.loss == b.loss and np.array_equal(a.grad, b.grad)
    y_view = np.repeat(y, 2)[::2]
    assert metric_loss.TripletLoss()(y_view, x) == a.loss


# --- bad input ------------------------------------------------------------------------------


def call(y, x, **kwargs):
    return metric_loss.TripletLoss().compute(y, x, **kwargs)


Y, X = batch()


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        # wrong dtype
        ((Y, X.astype(np.int32)), {}, TypeError, "float32 or float64"),
        ((Y, X.astype(np.complex64)), {}, TypeError, "float32 or float64"),
        ((Y, X.astype(object)), {}, TypeError, "float32 or float64"),
        ((Y, [["a", "b"]] * 8), {}, TypeError, "float32 or float64"),
        # labels of a float (or non-integer) dtype
        ((Y.astype(np.float32), X), {}, TypeError, "integer dtype"),
        ((Y.astype(bool), X), {}, TypeError, "integer dtype"),
        ((Y.astype(str), X), {}, TypeError, "integer dtype"),
        # wrong rank
        ((Y, X[0]), {}, ValueError, "2-d"),
        ((Y, X[None]), {}, ValueError, "2-d"),
        ((Y[:, None].repeat(2, axis=1), X), {}, ValueError, r"shape \(n,\) or \(n, 1\)"),
        ((Y, X), {"sample_weight": np.ones((8, 2))}, ValueError, r"shape \(n,\) or \(n, 1\)"),
        # mismatched lengths
        ((Y[:5], X), {}, ValueError, "must have one entry per example"),
        ((Y, X), {"sample_weight": np.ones(3)}, ValueError, "sample_weight has 3 entries"),
        ((Y, X), {"keys": X[:, :2], "key_labels": Y}, ValueError, "columns but key embeddings have"),
        ((Y, X), {"keys": X, "key_labels": Y[:3]}, ValueError, "must have one entry per example"),
        ((Y, X), {"keys": X}, ValueError, "keys and key_labels go together"),
        ((Y, X), {"keys": X.astype(np.float64), "key_labels": Y}, TypeError, "must match"),
        # NaN and infinities
        ((Y, np.where(X > 0.5, np.nan, X)), {}, ValueError, "non-finite value"),
        ((Y, np.where(X > 0.5, np.inf, X)), {}, ValueError, "non-finite value"),
        ((Y, X), {"sample_weight": np.full(8, np.nan)}, ValueError, "every weight must be finite"),
        ((Y, X), {"sample_weight": float("inf")}, ValueError, "every weight must be finite"),
        ((Y, X), {"keys": np.full((4, 4), np.nan, np.float32), "key_labels": Y[:4]}, ValueError, "non-finite"),
        ((Y, X), {"sample_weight": np.array(["a"] * 8)}, TypeError, "numeric"),
        # empty arrays
        ((Y[:0], X[:0]), {}, ValueError, "empty"),
        ((Y, X[:, :0]), {}, ValueError, "empty"),
        ((Y, X), {"keys": X[:0], "key_labels": Y[:0]}, ValueError, "key set is empty"),
        # labels outside int64
        ((Y.astype(np.uint64) + np.uint64(2**63), X), {}, ValueError, "int64"),
    ],
)
def test_bad_input(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        call(*args, **kwargs)


def test_overflowing_distance_is_a_value_error():
    y, x = batch(dtype=np.float32)
    with pytest.raises(ValueError, match="too large|overflowed"):
        metric_loss.TripletLoss(distance="squared_euclidean")(y, x * np.float32(1e30))


def test_native_module_copes_with_any_layout():
    # Called directly, without the Python layer's normalisation.
    native = metric_loss._native.NativeLoss.from_json('{"class_name": "TripletLoss"}')
    y, x = batch()
    loss, per_example, grad, grad_keys = native.compute(y.astype(np.int64), np.asfortranarray(x))
    assert loss == metric_loss.TripletLoss()(y, x) and grad_keys is None
    with pytest.raises(TypeError, match="2-d NumPy array of float32 or float64"):
        native.compute(y.astype(np.int64), x.astype(np.int16))
    with pytest.raises(TypeError):
        native.compute(y.astype(np.float64), x)


# --- threads --------------------------------------------------------------------------------


def test_concurrent_calls_agree():
    y, x = batch(n=256, d=16, classes=16)
    loss = metric_loss.TripletLoss()
    expected = loss.compute(y, x)
    results = [None] * 4

    def work(i):
        results[i] = loss.compute(y, x)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        assert r.loss == expected.loss and np.array_equal(r.grad, expected.grad)


def test_the_gil_is_released_while_a_loss_runs():
    y, x = batch(n=2048, d=64, classes=64)
    loss = metric_loss.TripletLoss(distance="euclidean")
    done = threading.Event()
    ticks = 0

    def work():
        for _ in range(3):
            loss.compute(y, x)
        done.set()

    t = threading.Thread(target=work)
    t.start()
    while not done.is_set():
        ticks += 1
    t.join()
    # Holding the GIL for the whole computation would leave this thread a handful of
    # iterations at most (one per switch interval outside the loss).
    assert ticks > 10_000


def test_pml_losses_give_pytorch_metric_learnings_values():
    x = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, -0.8]], dtype=np.float32)
    y = np.array([0, 0, 1, 1])
    assert abs(metric_loss.SupConLoss()(y, x) - 4.0701127) < 1e-5
    assert abs(metric_loss.ContrastiveLoss()(y, x) - 1.3704839) < 1e-5
    assert abs(metric_loss.NTXentLoss(temperature=1.0)(y, x) - 1.0812045) < 1e-5
    cosine = {"class_name": "CosineSimilarity", "config": {}}
    loss = metric_loss.ContrastiveLoss(pos_margin=1.0, neg_margin=0.0, distance=cosine)
    assert abs(loss(y, x) - 1.5999999) < 1e-5
    with pytest.raises((ValueError, TypeError)):
        metric_loss.NTXentLoss(temperature=0.0)
