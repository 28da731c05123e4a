"""Stopping on SIGTERM at a safe point."""

from __future__ import annotations

import threading


class Terminated(Exception):
    """SIGTERM arrived (the Job is being stopped): finish the manifest and leave."""


# Set by the SIGTERM handler, checked between packets: stopping at that point, rather than wherever
# the signal lands, never loses track of an image already handed to the encoding threads.
STOP_REQUESTED = threading.Event()
