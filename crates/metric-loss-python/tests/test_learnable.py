"""pytorch-metric-learning's losses with a learnable matrix (ArcFace, CosFace,
SubCenterArcFace, ProxyAnchor) from Python: PML's values, the parameters as a NumPy
property, their gradient, and the vendored fixtures with their parameters set."""

import gzip
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import metric_loss

FIXTURES = Path(__file__).resolve().parents[2] / "metric-loss-conformance" / "fixtures"

# PML 2.9.0's values (float32) with labels [0, 0, 1, 2] on e0 = (1, 0), e1 = (0.8, 0.6),
# e2 = (0, 1), e3 = (-0.6, -0.8), class weights / proxies (1, 0), (0, 1), (-1, 0).
Y = np.array([0, 0, 1, 2])
X = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, -0.8]], dtype=np.float32)
W = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
GOLDEN = [
    (metric_loss.ArcFaceLoss(3, 2), W, 2.957262),
    (metric_loss.ArcFaceLoss(3, 2, scale=1.0), W, 0.64855856),
    (metric_loss.CosFaceLoss(num_classes=3, embedding_size=2), W, 2.400017),
    (metric_loss.CosFaceLoss(3, 2, scale=1.0), W, 0.6810935),
    (
        metric_loss.SubCenterArcFaceLoss(num_classes=3, embedding_size=2, sub_centers=2, scale=1.0),
        np.array([[1, 0.6, 0, 0.6, -1, -0.8], [0, -0.8, 1, 0.8, 0, 0.6]]),
        0.8853639,
    ),
    (metric_loss.ProxyAnchorLoss(3, 2), W.T, 9.6266365),
    (metric_loss.ProxyAnchorLoss(3, 2, alpha=1.0), W.T, 1.6957088),
]


@pytest.mark.parametrize("loss, params, want", GOLDEN, ids=lambda v: type(v).__name__ if isinstance(v, metric_loss.MetricLoss) else None)
def test_pml_golden_values(loss, params, want):
    loss.parameters = params
    np.testing.assert_array_equal(loss.parameters, params)
    assert abs(loss(Y, X) - want) <= 1e-5 * max(1.0, want)
    result = loss.compute(Y, X)
    assert result.grad_parameters.shape == params.shape
    assert result.grad_parameters.dtype == np.float32 and result.grad.shape == X.shape


def load(name):
    with gzip.open(FIXTURES / f"{name}_public.json.gz", "rt") as f:
        return json.load(f)["cases"]


def runnable(case):
    return not case.get("error") and not case.get("ulp_sensitive_rows") and "ctor_args" not in case


@pytest.mark.parametrize("name", ["arcface", "cosface", "subcenter_arcface", "proxy_anchor"])
def test_fixture_cases_with_their_parameters(name):
    cases = [c for c in load(name) if runnable(c)]
    assert len(cases) > 80
    for case in cases:
        loss = metric_loss.from_config(case["config"])
        (param_name, param), = case["parameters"].items()
        loss.parameters = np.array(param["values"])
        assert loss.parameter_shape == (param_name, *param["shape"])
        x = np.array(case["embeddings"], dtype=np.float32)
        r = loss.compute(np.array(case["labels"]), x)
        scale = 1.0 + np.abs(np.array(case["grad"])).max()
        assert abs(r.loss - case["loss"]) <= 1e-5 * (1.0 + abs(case["loss"])), case["name"]
        np.testing.assert_allclose(r.grad, case["grad"], atol=1e-4 * scale, rtol=0, err_msg=case["name"])
        want = np.array(case["grad_parameters"][param_name])
        np.testing.assert_allclose(
            r.grad_parameters, want, atol=1e-4 * (1.0 + np.abs(want).max()), rtol=0, err_msg=case["name"]
        )


def test_parameters_survive_pickling_and_the_seed_draws_them():
    loss = metric_loss.ProxyAnchorLoss(4, 3, seed=5)
    assert loss.get_config()["seed"] == 5
    again = metric_loss.ProxyAnchorLoss(4, 3, seed=5)
    np.testing.assert_array_equal(loss.parameters, again.parameters)
    loss.parameters = np.ones((4, 3))
    copy = pickle.loads(pickle.dumps(loss))
    np.testing.assert_array_equal(copy.parameters, np.ones((4, 3)))
    assert type(copy) is metric_loss.ProxyAnchorLoss


def test_bad_parameters_and_calls_raise():
    loss = metric_loss.CosFaceLoss(3, 2)
    with pytest.raises(ValueError, match="shape"):
        loss.parameters = np.ones((3, 2))
    with pytest.raises(ValueError, match="finite"):
        loss.parameters = np.full((2, 3), np.nan)
    with pytest.raises(ValueError, match="outside"):
        loss(np.array([0, 3]), X[:2])
    with pytest.raises(ValueError, match="embedding_size"):
        loss(np.array([0, 1]), np.ones((2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="num_classes"):
        metric_loss.ArcFaceLoss(embedding_size=4)
    with pytest.raises(ValueError, match="CosineSimilarity"):
        metric_loss.ArcFaceLoss(3, 2, distance={"class_name": "LpDistance", "config": {}})
    with pytest.raises(TypeError):
        metric_loss.SubCenterArcFaceLoss(3, 2)
    with pytest.raises(ValueError, match="no learnable parameters"):
        metric_loss.TripletLoss()._native.read_parameters()
