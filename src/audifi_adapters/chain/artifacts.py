"""Compiled contract artifacts shipped with the package.

The JSON files in ``artifacts/`` are built from ``contracts/src`` by ``contracts/build.mjs``
(pinned solc, reproducible) and committed, so the Python runtime never needs Node.
Each file is ``{"contractName", "abi", "bytecode", "deployedBytecode"}``.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import attrs

__all__ = ["Artifact", "ArtifactNotFound", "available_artifacts", "load_artifact"]

_PACKAGE = "audifi_adapters.chain"
_FOLDER = "artifacts"


class ArtifactNotFound(LookupError):
    """No compiled artifact of that name ships with the package."""


@attrs.frozen
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str


def _folder() -> resources.abc.Traversable:
    return resources.files(_PACKAGE).joinpath(_FOLDER)


def available_artifacts() -> tuple[str, ...]:
    """Names of every shipped artifact, sorted."""
    return tuple(
        sorted(
            entry.name.removesuffix(".json")
            for entry in _folder().iterdir()
            if entry.name.endswith(".json")
        )
    )


@functools.cache
def load_artifact(name: str) -> Artifact:
    """Load the artifact of contract ``name`` (e.g. ``"MasterFactory"``); cached."""
    if not name.isidentifier():
        raise ArtifactNotFound(name)
    entry = _folder().joinpath(f"{name}.json")
    if not entry.is_file():
        raise ArtifactNotFound(name)
    data = json.loads(entry.read_text(encoding="utf-8"))
    if data.get("contractName") != name:
        raise ArtifactNotFound(f"{name}: artifact names {data.get('contractName')!r}")
    return Artifact(
        name=name,
        abi=list(data["abi"]),
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
    )
