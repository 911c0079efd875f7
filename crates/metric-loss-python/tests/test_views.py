"""TF Similarity's two-view losses from Python: values, gradients, dtypes and errors."""

import json

import numpy as np
import pytest

import metric_loss

# TF Similarity 0.17.1's values on za = (e0, e1, e2), zb = (e1, e2, e3) with e0 = (1, 0),
# e1 = (0.8, 0.6), e2 = (0, 1), e3 = (-0.6, -0.8), default arguments.
ZA = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], dtype=np.float32)
ZB = np.array([[0.8, 0.6], [0.0, 1.0], [-0.6, -0.8]], dtype=np.float32)
TF_LOSS = {
    "MultiNegativesRankLoss": 14.66689,
    "SimCLRLoss": 20.256506,
    "SimSiamLoss": -0.09900003,
    "Barlow": 2.767597,
}
VIEW_LOSSES = ["MultiNegativesRankLoss", "SimCLRLoss", "SimSiamLoss", "Barlow", "VicReg"]


@pytest.mark.parametrize("name", sorted(TF_LOSS))
def test_tf_similarity_values(name):
    loss = getattr(metric_loss, name)()
    assert abs(loss(ZA, ZB) - TF_LOSS[name]) <= 1e-5 * max(1.0, abs(TF_LOSS[name]))


def test_simsiam_gradients_are_tf_similaritys():
    result = metric_loss.SimSiamLoss().compute(ZA, ZB)
    grad_a = [[0.0, -0.10000001], [0.080000006, -0.10666667], [0.10000001, 0.0]]
    grad_b = [[-0.059999995, 0.080000006], [-0.13333334, 0.0], [0.080000006, -0.059999995]]
    np.testing.assert_allclose(result.grad_a, grad_a, atol=1e-6)
    np.testing.assert_allclose(result.grad_b, grad_b, atol=1e-6)
    assert result.grad_a.dtype == np.float32 and result.grad is result.grad_a


@pytest.mark.parametrize("name", VIEW_LOSSES)
def test_dtypes_and_config_round_trip(name):
    loss = getattr(metric_loss, name)()
    r32 = loss.compute(ZA, ZB)
    r64 = loss.compute(ZA.astype(np.float64), ZB.astype(np.float64))
    assert r64.grad_b.dtype == np.float64
    assert abs(r32.loss - r64.loss) <= 1e-5 * max(1.0, abs(r64.loss))
    r16 = loss.compute(ZA.astype(np.float16), ZB.astype(np.float16))
    assert r16.grad_a.dtype == np.float16
    again = metric_loss.from_config(json.loads(json.dumps(metric_loss.serialize(loss))))
    assert type(again) is type(loss) and again.compute(ZA, ZB).loss == r32.loss


def test_sample_weight_and_no_gradient():
    loss = metric_loss.SimSiamLoss()
    weighted = loss.compute(ZA, ZB, sample_weight=np.array([1.0, 0.0, 2.0], dtype=np.float32))
    plain = loss.compute(ZA, ZB, gradient=False)
    assert plain.grad_a is None and plain.grad_b is None
    assert weighted.loss != plain.loss


def test_bad_input_raises():
    loss = metric_loss.SimCLRLoss()
    with pytest.raises(TypeError):
        loss.compute(ZA, ZB.astype(np.float64))
    with pytest.raises(ValueError):
        loss.compute(ZA, np.ones((3, 5), dtype=np.float32))
    with pytest.raises(ValueError):
        loss.compute(ZA, np.array([[np.nan, 0.0]] * 3, dtype=np.float32))
    with pytest.raises(ValueError):
        metric_loss.SimCLRLoss(temperature=0.0)
    # A labelled loss refuses two views and a two-view loss refuses labels, by name.
    with pytest.raises(ValueError, match="view"):
        metric_loss.TripletLoss()._native.compute_views(ZA, ZB)
    with pytest.raises(ValueError, match="label"):
        loss._native.compute(np.arange(3), ZA)
