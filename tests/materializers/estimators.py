"""A scikit-learn estimator defined outside scikit-learn (untrusted by skops)."""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator, RegressorMixin


class Shifted(RegressorMixin, BaseEstimator):
    def __init__(self, inner: Any = None, shift: float = 0.0) -> None:
        self.inner = inner
        self.shift = shift

    def fit(self, x: Any, y: Any) -> Shifted:
        self.inner_ = self.inner.fit(x, y)
        return self

    def predict(self, x: Any) -> Any:
        return self.inner_.predict(x) + self.shift
