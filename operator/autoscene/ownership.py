"""Owner references: what the garbage collector deletes together with its owner."""

from collections.abc import Mapping
from typing import Any


def owned_by(owner: Mapping[str, Any], block_owner_deletion: bool = True) -> list[dict[str, Any]]:
    """`metadata.ownerReferences` that make `owner` the controller of a new object.

    Blocking the owner's deletion (foreground) needs `update` on the owner's finalizers where
    owner-reference permissions are enforced: worth it for what the operator owns, not for a
    short-lived helper Pod a user creates.
    """
    meta = owner["metadata"]
    return [
        {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": meta["name"],
            "uid": meta["uid"],
            "controller": True,
            "blockOwnerDeletion": block_owner_deletion,
        }
    ]
