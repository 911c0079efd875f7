"""Property tests: random shapes, values, dtypes, weights and configs give a Python
exception (ValueError / TypeError) or a finite result of the right shape, never a crash."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import metric_loss

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FLOATS = st.one_of(
    st.floats(-10, 10, width=32),
    st.sampled_from([0.0, -0.0, 1e-30, -1e30, 3e38, float("nan"), float("inf"), -float("inf")]),
)

LOSS_CONFIGS = st.one_of(
    st.builds(
        dict,
        class_name=st.just("TripletLoss"),
        config=st.fixed_dictionaries(
            {
                "distance": st.sampled_from(["cosine", "l2", "squared_euclidean", "manhattan", "inner_product", "snr", "bogus"]),
                "positive_mining_strategy": st.sampled_from(["easy", "hard", "semi-hard"]),
                "negative_mining_strategy": st.sampled_from(["easy", "hard", "semi-hard", "x"]),
                "margin": st.one_of(st.none(), st.floats(-2, 5)),
            }
        ),
    ),
    st.builds(dict, class_name=st.sampled_from(["PNLoss", "MultiSimilarityLoss", "CircleLoss", "SoftNearestNeighborLoss"]), config=st.just({})),
    st.builds(
        dict,
        class_name=st.just("XBM"),
        config=st.builds(dict, loss=st.just({"class_name": "TripletLoss"}), memory_size=st.integers(0, 40)),
    ),
)


@st.composite
def batches(draw):
    n = draw(st.integers(0, 12))
    d = draw(st.integers(0, 5))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.float16, np.int32]))
    if dtype == np.int32:
        x = draw(hnp.arrays(np.int32, (n, d)))
    else:
        with np.errstate(over="ignore"):
            x = draw(hnp.arrays(np.float64, (n, d), elements=FLOATS)).astype(dtype)
    labels = draw(hnp.arrays(draw(st.sampled_from([np.int64, np.int32, np.uint8, np.float32])), (draw(st.sampled_from([n, n, n + 1, max(n - 1, 0)])),), elements=st.integers(0, 3)))
    weight = draw(st.one_of(st.none(), st.floats(-2, 2), st.just(float("nan")), hnp.arrays(np.float64, (n,), elements=FLOATS)))
    return labels, x, weight


def reference_soft_margin(config):
    """TripletLoss's default soft margin is TF Similarity's ln(e^-x + 1) + x, documented to
    give +inf per example (and the +inf loss it makes) below x of about -88.7 in float32."""
    inner = config["config"].get("loss", config) if config["class_name"] == "XBM" else config
    c = inner.get("config", {})
    return (
        inner["class_name"] == "TripletLoss"
        and (c.get("margin", 1.0) is None or c.get("soft_margin", False))
        and not c.get("stable_soft_margin", False)
    )


def check_finite(result, n, d, documented_inf=False):
    per_example = result.per_example_loss
    if documented_inf:
        # The documented +inf only: never NaN, never -inf, and the gradient stays finite.
        assert not math.isnan(result.loss) and result.loss != -math.inf
        per_example = per_example[per_example != np.inf]
    else:
        assert math.isfinite(result.loss)
    assert result.per_example_loss.shape == (n,)
    assert np.all(np.isfinite(per_example))
    assert result.grad.shape == (n, d) and np.all(np.isfinite(result.grad))


@SETTINGS
@given(config=LOSS_CONFIGS, data=batches())
def test_an_exception_or_a_finite_result(config, data):
    labels, x, weight = data
    try:
        loss = metric_loss.from_config(config)
    except (ValueError, TypeError):
        return
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            result = loss.compute(labels, x, weight)
    except (ValueError, TypeError):
        return
    check_finite(result, *x.shape, documented_inf=reference_soft_margin(config))


@SETTINGS
@given(
    n=st.integers(1, 10),
    m=st.integers(0, 10),
    d=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
    remove_diagonal=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_key_sets_give_an_exception_or_a_finite_result(n, m, d, seed, remove_diagonal, dtype):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(dtype)
    keys = rng.standard_normal((m, d)).astype(dtype)
    labels = rng.integers(0, 3, n)
    key_labels = rng.integers(0, 3, m)
    try:
        result = metric_loss.TripletLoss().compute(labels, x, keys=keys, key_labels=key_labels, remove_diagonal=remove_diagonal)
    except ValueError:
        assert m == 0
        return
    check_finite(result, n, d)
    assert result.grad_keys.shape == (m, d) and np.all(np.isfinite(result.grad_keys))


@SETTINGS
@given(n=st.integers(2, 16), d=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_layout_never_changes_the_answer(n, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((d, n)).T  # Fortran order
    labels = rng.integers(0, 4, n)
    loss = metric_loss.TripletLoss(distance="euclidean")
    a = loss.compute(labels, x)
    b = loss.compute(labels, np.ascontiguousarray(x))
    assert a.loss == b.loss and np.array_equal(a.grad, b.grad)


@pytest.mark.parametrize("class_name", ["TripletLoss", "PNLoss", "MultiSimilarityLoss", "CircleLoss", "SoftNearestNeighborLoss"])
def test_every_loss_runs_on_a_normal_batch(class_name):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    check_finite(metric_loss.from_config({"class_name": class_name, "config": {}}).compute(np.arange(16) % 4, x), 16, 8)


def test_the_reference_soft_margin_gives_its_documented_inf():
    # Found by the property test above: the +inf is TF Similarity's, documented, not a NaN.
    loss = metric_loss.from_config({"class_name": "TripletLoss", "config": {"distance": "l2", "positive_mining_strategy": "easy", "negative_mining_strategy": "hard", "margin": None}})
    result = loss.compute(np.array([0, 0, 0]), np.array([[-1e30], [0.0], [0.0]]))
    check_finite(result, 3, 1, documented_inf=True)
    assert result.loss == math.inf
