"""civsync's Avro schemas, kept as ``.avsc`` files beside this module and shipped with it."""

from __future__ import annotations

from importlib import resources


def load(name: str) -> str:
    """The text of ``<name>.avsc``; raise FileNotFoundError naming the schema if absent."""
    resource = resources.files(__name__).joinpath(f"{name}.avsc")
    if not resource.is_file():
        raise FileNotFoundError(f"no schema {name}.avsc in {__name__}")
    return resource.read_text(encoding="utf-8")
