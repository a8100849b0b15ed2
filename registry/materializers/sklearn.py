"""scikit-learn estimators with skops (no pickle); joblib as a recorded-pickle
fallback.

skops stores an object tree of known types. Loading trusts scikit-learn,
numpy and scipy types by default; a file naming any other type is refused
with the list, to trust by name after reading it:
``load(name, options={"trusted": [...]})``.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from registry.exceptions import MaterializerError
from registry.materializers.base import FileEntry, Materializer, Unsupported

SKOPS = "model.skops"
JOBLIB = "model.joblib"


def _skops() -> Any:
    try:
        import skops.io
    except ImportError as exc:
        raise ImportError(
            "scikit-learn estimators need skops: pip install 'versioned-registry[sklearn]'"
        ) from exc
    return skops.io


class SkopsMaterializer(Materializer):
    format = "skops"
    load_options: ClassVar[frozenset[str]] = frozenset({"trusted"})

    def save(self, obj: Any, folder: Path) -> Mapping[str, FileEntry] | None:
        sio = _skops()
        try:
            sio.dump(obj, folder / SKOPS)
        except Exception as exc:  # skops raises many kinds on what it cannot walk
            raise Unsupported(f"skops cannot store {type(obj).__qualname__}: {exc}") from exc
        untrusted = sio.get_untrusted_types(file=folder / SKOPS)
        lost = [t for t in untrusted if not _resolves(t)]
        if lost:  # lambdas, locals: skops writes their names but cannot find them again
            raise Unsupported(f"skops cannot rebuild {lost}")
        if untrusted:
            # skops rebuilds its default-trusted types (scikit-learn, numpy,
            # scipy) by construction; others it may write and then refuse to
            # build (a compiled regex): load once to find out now, not later.
            try:
                sio.load(folder / SKOPS, trusted=untrusted)
            except Exception as exc:
                raise Unsupported(f"skops cannot load back {untrusted}: {exc}") from exc
        return None

    def load(self, folder: Path, cls: type | None, *, trusted: Sequence[str] = ()) -> Any:
        sio = _skops()
        path = folder / SKOPS
        untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in set(trusted)]
        if untrusted:
            raise MaterializerError(
                f"the skops file names types skops does not trust by default: {untrusted}. "
                "Loading them runs their code: if you trust them, pass "
                "options={'trusted': [...]} with these names"
            )
        return sio.load(path, trusted=list(trusted) or None)


def _resolves(name: str) -> bool:
    """Whether ``module.attr`` names something importable (without importing
    anything new: the saving process has the object's modules loaded)."""
    module_name, _, attr = name.rpartition(".")
    module = sys.modules.get(module_name)
    return module is not None and hasattr(module, attr)


class JoblibMaterializer(Materializer):
    """What skops cannot walk, with joblib: pickle, so recorded as such."""

    format = "joblib"
    uses_pickle = True

    def save(self, obj: Any, folder: Path) -> Mapping[str, FileEntry] | None:
        import joblib

        try:
            joblib.dump(obj, folder / JOBLIB)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise Unsupported(f"joblib cannot pickle {type(obj).__qualname__}: {exc}") from exc
        return None

    def load(self, folder: Path, cls: type | None) -> Any:
        import joblib

        return joblib.load(folder / JOBLIB)
