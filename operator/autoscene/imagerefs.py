"""Container image references: whether a string is one, by the grammar the kubelet parses it with.

The grammar is distribution's (github.com/distribution/reference, regexp.go), which the kubelet applies
before pulling (a reference it cannot parse is InvalidImageName). Written here: no well-kept Python
package parses references by that grammar (registry clients split them loosely and accept what the
kubelet refuses).
"""

import re

_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::{_TAG})?(?:@{_DIGEST})?")
NAME_MAX_LENGTH = 255


def reference_problem(image: str) -> str | None:
    """Why `image` is no image reference the kubelet can parse, in its words ("invalid reference
    format", "repository name must be lowercase"); None for a valid one, e.g. `busybox`,
    `busybox:1.36.1`, `registry.example.com:5000/team/tool:v2`, `ghcr.io/a/b@sha256:<64 hex digits>`."""
    found = _REFERENCE.fullmatch(image)
    if found is None:
        if _REFERENCE.fullmatch(image.lower()) is not None:  # only capitals in the path were wrong
            return "invalid reference format: repository name must be lowercase"
        return "invalid reference format"
    if len(found["name"]) > NAME_MAX_LENGTH:
        return f"repository name must not be more than {NAME_MAX_LENGTH} characters"
    return None


def kubelet_refusal(image: str, problem: str) -> str:
    """The message a kubelet gives an image it cannot parse (pkg/kubelet/images, reason
    InvalidImageName)."""
    return f'Failed to apply default image tag "{image}": couldn\'t parse image name "{image}": {problem}'
