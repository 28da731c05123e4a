"""`watching.follow`: list in pages, then watch; what a full listing held is reported once it is in."""

import functools
import threading
from pathlib import Path
from typing import Any

from autoscene import kube, watching
from autoscene.sandbox.session import Sandbox, wait_for


def config_map(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "data": {"n": name}}


def test_a_paged_listing_reaches_every_object_then_the_watch_goes_on(tmp_path: Path) -> None:
    previous = kube._api_client  # the session's other fixtures keep using theirs
    with Sandbox(tmp_path / "sandbox", with_operator=False) as sandbox:
        core = kube.core()
        for index in range(1_234):
            core.create_namespaced_config_map(sandbox.namespace, config_map(f"cm-{index:04d}"))
        seen: dict[str, str] = {}
        deleted: list[str] = []
        listings: list[list[tuple[str, str, str]]] = []
        stop = threading.Event()
        follower = threading.Thread(
            target=watching.follow,
            args=(
                functools.partial(core.list_namespaced_config_map, sandbox.namespace),
                lambda obj: seen.__setitem__(obj["metadata"]["name"], obj["data"]["n"]),
                lambda obj: deleted.append(obj["metadata"]["name"]),
                stop,
                listings.append,
            ),
            kwargs={"page_size": 100, "failures": 30},
            daemon=True,
        )
        follower.start()
        try:
            wait_for(lambda: listings or None, 60, "the first full listing")
            [listed] = listings
            names = [name for _, name, _ in listed]
            # 13 pages of 100, each object once, in list order, and each handed to on_object.
            assert names == [f"cm-{index:04d}" for index in range(1_234)]
            assert set(seen) == set(names)
            # The watch takes over from the listing's resourceVersion.
            core.create_namespaced_config_map(sandbox.namespace, config_map("late"))
            core.delete_namespaced_config_map("cm-0007", sandbox.namespace)
            wait_for(lambda: ("late" in seen and "cm-0007" in deleted) or None, 30, "the watch's events")
        finally:
            stop.set()
            follower.join(timeout=10)
            kube._api_client = previous
