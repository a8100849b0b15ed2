"""Every example of the replaced library's README runs on this package.

The README is ``../shared/seed-README.txt`` (mindtrace-registry's package
page). Each test below is one of its example blocks, in the page's order,
with the README's section heading in the test's docstring. Between the
``# -- README`` and ``# -- end`` markers the lines are as printed there,
with only these changes:

- ``mindtrace.registry`` is read as ``registry``;
- the S3 example's two typos are fixed (it imports ``MinioRegistryBackend``
  but builds ``S3RegistryBackend``, and passes ``minio_backend``);
- placeholders are filled in above the markers: ``trained_model``,
  ``dataset``, ``config_dict``, ``obj``, ``v1``..``v3``, ``my_module``
  (``tests.seed_module``), endpoints, credentials and bucket names;
- ``Registry`` inside an example is ``seed.Registry``: the real class, opened
  on this run's target (local disk, moto, SeaweedFS or fake-gcs), each call a
  fresh registry. A registry stores its settings (``mutable``,
  ``version_objects``) when created, as the replaced library does, so the
  examples that build a second ``Registry(mutable=True)`` need their own.

After ``# -- end`` each test asserts what the example's comments say. When
the README changes, change the block between the markers to match it.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import registry as registry_package
from registry import GCSBackend, LocalBackend, S3Backend
from registry.backends.base import Backend
from tests.child import load_in_child
from tests.seed_module import MyClass, MyMaterializer

TARGETS = ["local", "moto", "seaweedfs", "gcs"]
REPO = Path(__file__).resolve().parents[1]


@dataclass
class TinyModel:
    """Stands in for ``trained_model``: what a small training run produces."""

    weights: list[float]
    bias: float


@dataclass
class SeedTarget:
    """Where this run's examples save: ``Registry(...)`` opens a fresh
    registry there on each call, unless the example passes its own backend."""

    kind: str
    make_backend: Callable[[], Backend]
    opened: list[registry_package.Registry] = field(default_factory=list)

    def Registry(self, *args: Any, **kwargs: Any) -> registry_package.Registry:
        if not args and "backend" not in kwargs:
            kwargs["backend"] = self.make_backend()
        reg = registry_package.Registry(*args, **kwargs)
        self.opened.append(reg)
        return reg


@pytest.fixture(params=TARGETS)
def seed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SeedTarget]:
    kind: str = request.param
    if kind == "local":
        seed = SeedTarget(kind, lambda: LocalBackend(tmp_path / f"reg-{uuid.uuid4().hex[:8]}"))
    else:
        target = request.getfixturevalue(f"{kind}_target")
        seed = SeedTarget(kind, lambda: target.backend())
    yield seed
    for reg in seed.opened:
        reg.close()


def new_bucket(kind: str, request: pytest.FixtureRequest) -> tuple[Any, str]:
    """A fresh, empty bucket on the session's server of ``kind``."""
    target = request.getfixturevalue(f"{kind}_target")
    bucket = f"seed-{uuid.uuid4().hex[:12]}"
    if kind == "gcs":
        maker: Backend = GCSBackend(
            bucket_name=bucket,
            endpoint=target.server.endpoint,
            create_bucket=True,
            project_id="my-project",
        )
    else:
        maker = target.server.backend(bucket, create_bucket=True)
    with registry_package.Registry(backend=maker) as reg:
        assert reg.list_objects() == []
    return target, bucket


def bare_endpoint(url: str) -> str:
    """``http://127.0.0.1:PORT`` -> ``127.0.0.1:PORT`` (as the README writes it)."""
    return url.split("://", 1)[1]


# -- Quick Start -------------------------------------------------------------------------


def test_quick_start(seed: SeedTarget, capsys: pytest.CaptureFixture[str]) -> None:
    """Quick Start"""
    Registry = seed.Registry
    trained_model = TinyModel(weights=[0.5, -1.25], bias=0.1)
    dataset = np.arange(12, dtype=np.float32).reshape(3, 4)
    config_dict = {"lr": 0.1, "layers": [64, 64]}

    # -- README
    # Create a registry (uses local backend by default)
    registry = Registry()
    # Save objects
    registry.save("my:model", trained_model)
    registry.save("my:data", dataset, version="1.0.0")
    # Load objects
    model = registry.load("my:model")
    data = registry.load("my:data", version="1.0.0")
    # Dict-like access
    registry["my:config"] = config_dict
    config = registry["my:config"]
    # Check existence
    exists = registry.has_object("my:model", "1.0.0")  # -> bool
    # Get metadata
    info = registry.info("my:model", "1.0.0")  # -> dict
    # List objects and versions
    print(registry.list_objects())
    print(registry.list_versions("my:model"))
    # -- end

    assert model == trained_model
    assert isinstance(data, np.ndarray) and np.array_equal(data, dataset)
    assert config == config_dict
    assert exists is True
    assert isinstance(info, dict) and info["name"] == "my:model"
    assert info["class"].endswith("TinyModel")
    printed = capsys.readouterr().out.splitlines()
    assert printed == [str(["my:config", "my:data", "my:model"]), str(["1"])]


def test_quick_start_default_registry_is_local_disk(tmp_path: Path) -> None:
    """Quick Start: ``Registry()`` itself, on the default location."""
    from registry import Registry

    registry = Registry()
    registry.save("my:model", {"w": 1})
    assert isinstance(registry.backend, LocalBackend)
    assert Path(os.environ["REGISTRY_HOME"]) == tmp_path / "home-registry"
    assert (tmp_path / "home-registry" / "meta" / "my:model").is_dir()


# -- Backend Configuration -----------------------------------------------------------------


def test_local_backend(tmp_path: Path) -> None:
    """Backend Configuration: Local Backend"""
    path = tmp_path / "path" / "to" / "registry"

    # -- README
    from registry import LocalRegistryBackend, Registry

    # Default local registry
    registry = Registry()
    # Custom local registry
    local_backend = LocalRegistryBackend(uri=str(path))
    registry = Registry(backend=local_backend)
    # -- end

    registry.save("my:model", b"weights")
    assert registry.load("my:model") == b"weights"
    assert (path / "meta" / "my:model").is_dir()
    assert LocalRegistryBackend is LocalBackend


@pytest.mark.parametrize("kind", ["moto", "seaweedfs"])
def test_s3_compatible_backend(kind: str, request: pytest.FixtureRequest) -> None:
    """Backend Configuration: S3-Compatible Backend (MinIO, AWS S3)"""
    target, bucket = new_bucket(kind, request)
    endpoint = bare_endpoint(target.server.endpoint)
    access_key, secret_key = target.server.access_key, target.server.secret_key

    # -- README
    from registry import Registry, S3RegistryBackend

    # MinIO / S3-compatible registry
    s3_backend = S3RegistryBackend(
        endpoint=endpoint,
        access_key=access_key,
        secret_key=secret_key,
        bucket=bucket,
        secure=False,
    )
    registry = Registry(backend=s3_backend)
    # -- end

    registry.save("my:model", {"w": [1, 2]})
    assert registry.load("my:model") == {"w": [1, 2]}
    with registry_package.Registry(backend=target.server.backend(bucket)) as other:
        assert other.list_objects() == ["my:model"]  # really in that bucket
    assert registry_package.MinioRegistryBackend is S3RegistryBackend is S3Backend


def test_gcp_backend(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Backend Configuration: GCP Backend"""
    target, bucket = new_bucket("gcs", request)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", target.server.endpoint)
    service_account = tmp_path / "service-account.json"  # not read: the emulator needs none

    # -- README
    from registry import GCPRegistryBackend, Registry

    gcp_backend = GCPRegistryBackend(
        uri=f"gs://{bucket}",
        project_id="my-project",
        bucket_name=bucket,
        credentials_path=str(service_account),
    )
    registry = Registry(backend=gcp_backend)
    # -- end

    registry.save("my:model", b"gcs-weights")
    assert registry.load("my:model") == b"gcs-weights"
    with registry_package.Registry(backend=target.server.backend(bucket)) as other:
        assert other.list_objects() == ["my:model"]
    assert GCPRegistryBackend is GCSBackend


# -- Caching ---------------------------------------------------------------------------------


def _cached_files(reg: registry_package.Registry) -> list[Path]:
    cache = reg.async_registry._cache
    if cache is None or not cache.root.exists():
        return []
    return [p for p in cache.root.rglob("*") if p.is_file() and "objects" in p.parts]


def test_caching(seed: SeedTarget) -> None:
    """Caching"""
    gcp_backend = seed.make_backend()  # the README's name, whatever this target is
    writer = seed.Registry(backend=gcp_backend)
    big = os.urandom(200_000)  # above the inline limit: stored as a file, cached as one
    writer.save("my:model", big)

    # -- README
    # Caching is on by default for remote backends
    registry = seed.Registry(backend=gcp_backend, use_cache=True)
    # Control verification level on load
    obj = registry.load("my:model", verify="none")  # Trust cache, fastest
    obj = registry.load("my:model", verify="integrity")  # Verify hash (default)
    obj = registry.load("my:model", verify="full")  # Hash + staleness check
    # Clear cache manually
    registry.clear_cache()
    # -- end

    assert obj == big
    assert _cached_files(registry) == []  # cleared
    if seed.kind == "local":
        assert registry.async_registry._cache is None  # local disk is read in place
        return
    assert writer.async_registry._cache is not None  # on by default for remote backends
    registry.load("my:model")
    (cached,) = _cached_files(registry)
    cached.write_bytes(b"x" * len(big))  # damage the cached copy
    assert registry.load("my:model", verify="none") != big  # trusts the cache completely
    assert registry.load("my:model", verify="integrity") == big  # hash mismatch: fetched again
    assert cached.read_bytes() == big


@pytest.mark.parametrize("kind", ["moto", "seaweedfs", "gcs"])
def test_caching_full_detects_stale_entries(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Caching: "full" compares the cache against remote; the others trust it."""
    target = request.getfixturevalue(f"{kind}_target")
    prefix = f"seed-{uuid.uuid4().hex}"
    host_a, host_b = (
        registry_package.Registry(
            backend=target.backend(prefix=prefix), mutable=True, cache_dir=tmp_path / host
        )
        for host in ("a", "b")  # two machines: two caches
    )
    host_a.save("my:model", "old")
    assert host_b.load("my:model") == "old"  # cached on host b
    host_a.save("my:model", "new", on_conflict="overwrite")
    assert host_b.load("my:model", verify="integrity") == "old"  # stale, as documented
    assert host_b.load("my:model", verify="full") == "new"
    host_a.close()
    host_b.close()


# -- Version Management ----------------------------------------------------------------------


def test_version_management(seed: SeedTarget) -> None:
    """Version Management"""
    Registry = seed.Registry
    v1, v2, v3 = {"epoch": 1}, {"epoch": 2}, {"epoch": 3}

    # -- README
    # Versioned registry (auto-increments versions)
    registry = Registry(version_objects=True)
    registry.save("model", v1)  # version = "1"
    registry.save("model", v2)  # version = "2"
    registry.save("model", v3, version="2.1")  # version = "2.1"
    # Load specific or latest version
    model = registry.load("model", version="2.1")
    latest = registry.load("model", version="latest")
    # Unversioned registry (single version per name, default)
    registry = Registry(version_objects=False)
    # -- end

    versioned, unversioned = seed.opened
    assert versioned.list_versions("model") == ["1", "2", "2.1"]
    assert model == v3 and latest == v3
    assert versioned.load("model", version="1") == v1
    unversioned.save("model", v1)
    assert unversioned.list_versions("model") == ["1"]
    assert unversioned.load("model", version="2.1") == v1  # any version: the one there is


# -- Conflict Handling -----------------------------------------------------------------------


def test_conflict_handling(seed: SeedTarget) -> None:
    """Conflict Handling"""
    Registry = seed.Registry
    from registry import RegistryVersionConflict

    registry = Registry()
    obj = {"weights": [1, 2, 3]}

    # -- README
    # Skip (default): raises RegistryVersionConflict for single ops
    registry.save("model", obj, version="1.0.0", on_conflict="skip")
    # Overwrite: replaces existing version (requires mutable=True)
    registry = Registry(mutable=True)
    registry.save("model", obj, version="1.0.0", on_conflict="overwrite")
    # -- end

    immutable, mutable = seed.opened
    with pytest.raises(RegistryVersionConflict):
        immutable.save("model", {"other": 1}, version="1.0.0", on_conflict="skip")
    assert immutable.load("model") == obj
    mutable.save("model", {"replaced": True}, version="1.0.0", on_conflict="overwrite")
    assert mutable.load("model", version="1.0.0") == {"replaced": True}
    with pytest.raises(registry_package.RegistryConfigError, match="mutable"):
        immutable.save("model", obj, on_conflict="overwrite")  # requires mutable=True


# -- Custom Materializers --------------------------------------------------------------------


def test_custom_materializers(seed: SeedTarget) -> None:
    """Custom Materializers (``my_module`` is tests.seed_module, which does not import registry)"""
    my_object = MyClass({"kind": "custom", "n": 3})
    Registry = seed.Registry

    # -- README
    registry = Registry()
    # Register a materializer for a custom class
    registry.register_materializer("tests.seed_module.MyClass", "tests.seed_module.MyMaterializer")
    # Save with explicit materializer
    registry.save("custom:obj", my_object, materializer=MyMaterializer)
    # -- end

    registry.save("custom:auto", my_object)  # the registration picks the materializer
    for name in ("custom:obj", "custom:auto"):
        info = registry.info(name)["1"]
        assert info["materializer"] == "tests.seed_module.MyMaterializer"
        assert list(info["files"]) == ["my_class.json"]
        assert registry.load(name) == my_object
    assert load_in_child(registry, "custom:auto") == (
        "tests.seed_module MyClass {'kind': 'custom', 'n': 3}"
    )


# -- Metadata and Information ----------------------------------------------------------------


def test_metadata_and_information(seed: SeedTarget) -> None:
    """Metadata and Information"""
    registry = seed.Registry()
    registry.save("my:model", {"w": 1}, version="1.0.0", metadata={"team": "cv"})
    registry.save("my:other", [1, 2])

    # -- README
    # Get info for a specific object version
    info = registry.info("my:model", "1.0.0")
    # -- end
    assert info["metadata"] == {"team": "cv"} and info["version"] == "1"
    one = info
    # -- README
    # Get info for all versions of an object
    info = registry.info("my:model")
    # -- end
    assert info == {"1": one}
    # -- README
    # Get info for all objects
    info = registry.info()
    # Check existence
    exists = registry.has_object("my:model", "1.0.0")  # -> bool
    # -- end

    assert set(info) == {"my:model", "my:other"} and info["my:model"] == {"1": one}
    assert exists is True
    assert registry.has_object("my:nothing", "1.0.0") is False


# -- Error Handling --------------------------------------------------------------------------


def test_error_handling(seed: SeedTarget, capsys: pytest.CaptureFixture[str]) -> None:
    """Error Handling"""
    registry = seed.Registry()
    obj = {"weights": [1]}
    registry.save("model", obj, version="1.0.0")

    # -- README
    from registry.core.exceptions import (
        RegistryObjectNotFound,
        RegistryVersionConflict,
    )

    try:
        model = registry.load("nonexistent:model")
    except RegistryObjectNotFound as e:
        print(f"Object not found: {e}")
    try:
        registry.save("model", obj, version="1.0.0")  # already exists
    except RegistryVersionConflict as e:
        print(f"Version conflict: {e}")
    # -- end

    not_found, conflict = capsys.readouterr().out.splitlines()
    assert not_found.startswith("Object not found: ") and "nonexistent:model" in not_found
    assert conflict.startswith("Version conflict: ") and "'model' already exists" in conflict
    assert "model" not in locals()  # the load raised before assigning
    assert RegistryObjectNotFound is registry_package.RegistryObjectNotFound


# -- Batch Operations ------------------------------------------------------------------------


def test_batch_operations(seed: SeedTarget) -> None:
    """Batch Operations"""
    registry = seed.Registry()
    obj_a, obj_b = {"model": "a"}, np.ones(3)

    # -- README
    # Batch save
    result = registry.save(
        ["model:a", "model:b"],
        [obj_a, obj_b],
        version=["1.0.0", "1.0.0"],
    )
    # result is a BatchResult with .results, .errors, .succeeded, .failed
    # -- end
    assert result.results == ["1", "1"] and result.errors == {}
    assert result.succeeded == [0, 1] and result.failed == []
    assert result.all_succeeded and result.success_count == 2 and result.failure_count == 0
    # -- README
    # Batch load
    result = registry.load(["model:a", "model:b"], version=["1.0.0", "1.0.0"])
    # -- end

    assert result.results[0] == obj_a and np.array_equal(result.results[1], obj_b)
    again = registry.save(["model:a", "model:c"], [obj_a, obj_a], version=["1.0.0", "1.0.0"])
    assert again.skipped == [0] and again.succeeded == [1] and again.skipped_count == 1


# -- Debug Logging ---------------------------------------------------------------------------


def test_debug_logging(seed: SeedTarget, caplog: pytest.LogCaptureFixture) -> None:
    """Troubleshooting: Debug Logging"""
    Registry = seed.Registry
    caplog.set_level("DEBUG")
    root_handlers = list(logging.root.handlers)

    # -- README (its `import logging` is at the top of this file)
    logging.basicConfig(level=logging.DEBUG)
    registry = Registry()
    # Operations will now show detailed logs
    # -- end

    registry.save("my:model", {"w": 1})
    registry.load("my:model")
    for handler in set(logging.root.handlers) - set(root_handlers):
        logging.root.removeHandler(handler)  # basicConfig's, if pytest had none installed
    ours = [r for r in caplog.records if r.name.startswith("registry")]
    assert any("saved my:model@1" in r.getMessage() for r in ours)
    assert any("loaded my:model@1" in r.getMessage() for r in ours)


# -- Store -----------------------------------------------------------------------------------


@pytest.fixture(params=["moto", "seaweedfs"])
def store_backends(
    request: pytest.FixtureRequest, gcs_target: Any
) -> Iterator[tuple[Backend, Backend]]:
    """(gcp_backend, s3_backend) for the Store examples, on fresh prefixes."""
    s3_target = request.getfixturevalue(f"{request.param}_target")
    yield gcs_target.backend(), s3_target.backend()


def test_store_mounts_and_keys(store_backends: tuple[Backend, Backend]) -> None:
    """Store (Multi-Registry Facade): Mounts, then Key Format"""
    gcp_backend, s3_backend = store_backends
    obj = {"weights": [1, 2]}
    # The models bucket already holds a versioned registry (a fill-in: with an
    # unversioned one the second save below would conflict with the first).
    registry_package.Registry(backend=gcp_backend, version_objects=True).list_objects()
    registry_package.Registry(backend=s3_backend).save("dataset", b"rows")

    # -- README
    from registry import Registry, Store

    # A bare Store — just the temp mount
    store = Store()
    # Add named mounts
    store.add_mount("models", Registry(backend=gcp_backend))
    store.add_mount("datasets", Registry(backend=s3_backend), read_only=True)
    # Change the default write target
    store.set_default_mount("models")
    # Qualified — targets the "models" mount explicitly
    store.save("models/my_model", obj)
    model = store.load("models/my_model@1.0.0")
    # Unqualified — writes go to default_mount, reads discover across all mounts
    store.save("my_model", obj)  # -> saves to default_mount
    model = store.load("my_model")  # -> searches all mounts
    # -- end

    assert model == obj
    assert store.list_mounts() == ["temp", "models", "datasets"]
    assert store.list_versions("models/my_model") == ["1", "2"]
    assert store.load("dataset") == b"rows"  # found in the read-only mount
    with pytest.raises(PermissionError):
        store.save("datasets/x", 1)
    store.close()


def test_store_errors_and_default_mount() -> None:
    """Store: Read and Write Routing, Default Mount Behaviour, Store Errors"""
    from registry import (
        Registry,
        Store,
        StoreAmbiguousObjectError,
        StoreKeyFormatError,
        StoreLocationNotFound,
    )

    store = Store()
    assert store.default_mount == "temp"
    store.add_mount("models", Registry(backend=registry_package.MemoryBackend()))
    store.set_default_mount("models")
    store.remove_mount("models")
    assert store.default_mount == "temp"  # removing the default resets it to temp
    with pytest.raises(ValueError, match="temp"):
        store.remove_mount("temp")
    store.add_mount("a", Registry(backend=registry_package.MemoryBackend()))
    store.save("a/x", 1)
    store.save("temp/x", 2)
    with pytest.raises(StoreAmbiguousObjectError):
        store.load("x")
    with pytest.raises(StoreLocationNotFound):
        store.load("nope/x")
    with pytest.raises(StoreKeyFormatError):
        store.load("a/b/c")
    store.close()
