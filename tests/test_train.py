"""Fitting one model spec: the use case's thread count reaches the estimator."""

from __future__ import annotations

import numpy as np
import pandas as pd

from goldgate.train import fit_spec
from goldgate.usecase import load_usecase


def test_fit_spec_uses_the_use_case_thread_count() -> None:
    usecase = load_usecase("fx")
    spec = next(s for s in usecase.models.candidates if s.kind == "lightgbm")
    spec = spec.model_copy(update={"params": {**spec.params, "n_estimators": 5}})
    rng = np.random.default_rng(0)
    train = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    train[usecase.target.name] = train["a"] * 0.5 + rng.normal(scale=0.1, size=300)

    default, _ = fit_spec(spec, train, ["a", "b", "c"], usecase)
    two = usecase.model_copy(update={"models": usecase.models.model_copy(update={"threads": 2})})
    fitted, _ = fit_spec(spec, train, ["a", "b", "c"], two)

    assert default.get_params()["n_jobs"] == 1
    assert fitted.get_params()["n_jobs"] == 2
    np.testing.assert_allclose(fitted.predict(train[["a", "b", "c"]]), default.predict(train[["a", "b", "c"]]))
