"""The packaging: pyproject.toml and uv.lock agree, each pin is written once, the service's
installs (``make run``, the two images) carry no dev tools and each image only its own stack.

Offline and fast: the lock is read as TOML; uv itself (in ``.tools``, where the Makefile puts
it) only double-checks what the lock says, with ``--offline``.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import tomllib
from collections import defaultdict
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from shared import typefaces

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "mnist-service"
PACKAGES = ("api", "worker", "shared")

DEV_TOOLS = {
    "coverage",
    "import-linter",
    "matplotlib",
    "mypy",
    "playwright",
    "pytest",
    "pytest-cov",
    "ruff",
    "schemathesis",
}
# What only the worker needs: the model stack the API image must not carry.
MODEL_STACK = {"scikit-learn", "scipy", "numpy", "joblib", "threadpoolctl"}
WEB_STACK = {"fastapi", "starlette", "uvicorn", "fakeredis", "python-multipart"}


@cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@cache
def lock() -> dict[str, Any]:
    return tomllib.loads((ROOT / "uv.lock").read_text())


def declared() -> dict[str, list[Requirement]]:
    """The project's requirements by group: "" for the core list, else the extra's name."""
    project = pyproject()["project"]
    groups = {"": project["dependencies"], **project["optional-dependencies"]}
    return {group: [Requirement(line) for line in lines] for group, lines in groups.items()}


def lock_entries() -> dict[str, list[dict[str, Any]]]:
    entries: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for package in lock()["package"]:
        entries[package["name"]].append(package)
    return entries


def installed_with(extras: Iterable[str]) -> set[str]:
    """Every package the lock would install for the project with these extras.

    Markers are ignored, so this is the union over platforms: a package missing here is
    missing everywhere.
    """
    entries = lock_entries()
    wanted: list[tuple[str, frozenset[str]]] = [(PROJECT, frozenset(extras))]
    seen: set[tuple[str, frozenset[str]]] = set()
    while wanted:
        name, its_extras = wanted.pop()
        if (name, its_extras) in seen:
            continue
        seen.add((name, its_extras))
        for package in entries[name]:
            edges = list(package.get("dependencies", []))
            for extra in its_extras:
                edges += package.get("optional-dependencies", {}).get(extra, [])
            wanted += [(edge["name"], frozenset(edge.get("extra", []))) for edge in edges]
    return {name for name, _ in seen} - {PROJECT}


def find_uv() -> str | None:
    local = ROOT / ".tools" / "bin" / "uv"
    return str(local) if local.is_file() else shutil.which("uv")


def run_uv(*args: str) -> str:
    uv = find_uv()
    if uv is None:
        pytest.skip("uv is not installed (the Makefile puts it in .tools)")
    env = {**os.environ, "UV_OFFLINE": "1", "UV_PYTHON_DOWNLOADS": "never"}
    done = subprocess.run(
        [uv, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_lock_was_made_from_this_pyproject() -> None:
    (project,) = lock_entries()[PROJECT]
    locked = {
        (r["name"], r.get("specifier", ""), tuple(sorted(r.get("extras", []))), r.get("marker", ""))
        for r in project["metadata"]["requires-dist"]
    }
    wanted = set()
    for group, requirements in declared().items():
        for req in requirements:
            marker = f"extra == '{group}'" if group else ""
            extras = tuple(sorted(req.extras))
            wanted.add((canonicalize_name(req.name), str(req.specifier), extras, marker))
    assert locked == wanted, "uv.lock is stale: run `make lock`"
    assert set(project["metadata"]["provides-extras"]) == {"api", "worker", "flower", "dev"}


def test_uv_finds_the_lock_up_to_date() -> None:
    run_uv("lock", "--check")


def test_each_dependency_is_declared_once() -> None:
    names = [
        canonicalize_name(req.name)
        for requirements in declared().values()
        for req in requirements
        if canonicalize_name(req.name) != PROJECT
    ]
    assert sorted(names) == sorted(set(names))


def test_direct_dependencies_are_locked_at_their_bound() -> None:
    """Bounds are the versions we run (resolution "lowest-direct"), so they are the pins."""
    versions = {name: {e["version"] for e in found} for name, found in lock_entries().items()}
    for requirements in declared().values():
        for req in requirements:
            if canonicalize_name(req.name) == PROJECT:
                continue
            (specifier,) = req.specifier
            assert specifier.operator == ">=", req
            assert versions[canonicalize_name(req.name)] == {specifier.version}, req


def test_the_lock_pins_each_package_once() -> None:
    service = installed_with(["api", "worker"])
    for name, found in lock_entries().items():
        if len(found) > 1:
            # Only a dev tool may differ by Python version, each on its own versions.
            assert name not in service, name
            assert all(entry.get("resolution-markers") for entry in found), name


def test_the_service_has_no_dev_tools() -> None:
    assert installed_with(["api", "worker"]) & DEV_TOOLS == set()
    assert installed_with(["dev"]) >= DEV_TOOLS


def test_the_api_image_has_no_model_stack() -> None:
    api = installed_with(["api"])
    assert {"fastapi", "uvicorn", "celery", "fakeredis", "pillow"} <= api
    assert api & (MODEL_STACK | DEV_TOOLS) == set()


def test_the_worker_image_has_no_web_stack() -> None:
    worker = installed_with(["worker"])
    assert {"celery", "scikit-learn", "numpy", "pillow"} <= worker
    assert worker & (WEB_STACK | DEV_TOOLS) == set()


@pytest.mark.parametrize("extras", [["api"], ["worker"], ["api", "worker"]])
def test_uv_exports_what_the_lock_says(extras: list[str]) -> None:
    flags = [arg for extra in extras for arg in ("--extra", extra)]
    exported = run_uv("export", "--frozen", "--no-emit-project", "--no-hashes", *flags)
    names = {
        canonicalize_name(Requirement(line.split(";")[0]).name)
        for line in exported.splitlines()
        if line and not line.startswith((" ", "#"))
    }
    assert names, exported
    assert names <= installed_with(extras)
    assert names & DEV_TOOLS == set()


@pytest.mark.parametrize("image", ["api", "worker"])
def test_each_image_installs_its_own_extra_from_the_lock(image: str) -> None:
    dockerfile = (ROOT / f"Dockerfile.{image}").read_text()
    # The worker's names its extras in a build argument (compose's flower profile adds one).
    named = re.findall(r"--extra (\w+)", dockerfile) + re.findall(r'ARG EXTRAS="(\w+)"', dockerfile)
    assert named == [image]
    assert "COPY pyproject.toml uv.lock" in dockerfile
    assert "--frozen" in dockerfile


def test_console_scripts_point_at_functions() -> None:
    scripts = pyproject()["project"]["scripts"]
    assert scripts
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target


def test_an_installed_project_has_every_package_and_its_files() -> None:
    setuptools = pyproject()["tool"]["setuptools"]
    assert setuptools["packages"]["find"]["include"] == [f"{name}*" for name in PACKAGES]
    data = setuptools["package-data"]
    for name in PACKAGES:
        folder = ROOT / name
        assert (folder / "__init__.py").is_file(), name
        for path in folder.rglob("*"):
            if path.is_dir() or path.suffix in {".py", ".pyc"} or "__pycache__" in path.parts:
                continue
            relative = path.relative_to(folder)
            assert any(relative.match(glob) for glob in data.get(name, [])), path


@pytest.mark.parametrize("installer", ["Dockerfile.worker", ".ci/run"])
def test_the_typeface_packages_are_installed_where_training_runs(installer: str) -> None:
    # The worker image trains (compose's one-shot train service) and CI trains the real model.
    text = (ROOT / installer).read_text()
    named = set(re.findall(r"\bfonts-[a-z0-9-]+", text))
    assert set(typefaces.PACKAGES) <= named
