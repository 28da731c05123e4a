"""Owner references: what the garbage collector deletes together with its owner."""

from collections.abc import Mapping
from typing import Any


def owned_by(owner: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`metadata.ownerReferences` that make `owner` the controller of a new object."""
    meta = owner["metadata"]
    return [
        {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": meta["name"],
            "uid": meta["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
