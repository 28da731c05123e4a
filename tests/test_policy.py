"""Policy scan of what the repository deploys: checkov over the rendered kustomizations and the Dockerfiles.

`kubectl kustomize manifests` (the operator) and `kubectl kustomize manifests/samples` are rendered into
a scratch folder beside copies of `images/*/Dockerfile`, and checkov scans that folder with the settings
in `.checkov.yaml`. Any finding fails the test, unless `.checkov.yaml` skips its check with a one-line
reason (or an object carries a `checkov.io/skip<n>: CHECK_ID=reason` annotation).

checkov lives in its own virtualenv, `.venv-tools/` (`make tools`), since its pinned dependencies
conflict with `requirements.lock`; the scans are skipped, saying so, when it is not installed.
"""

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / ".checkov.yaml"
TOOLS_CHECKOV = REPO / ".venv-tools" / "bin" / "checkov"
DOCKERFILES = sorted((REPO / "images").glob("*/Dockerfile"))
RENDERED = {"manifests": REPO / "manifests", "samples": REPO / "manifests" / "samples"}
CHECK_ID = re.compile(r"^CKV2?_[A-Z0-9]+_\d+$")
SKIP_LINE = re.compile(r"^\s*-\s*(?P<check>\S+)\s*(?:#\s*(?P<reason>.*?))?\s*$")
MIN_REASON = 20
NO_REASON = "No comment provided"  # what checkov reports for an inline skip without a reason


# Helpers (pure) --------------------------------------------------------------------------------


def skip_reasons(config_text: str) -> dict[str, str]:
    """`skip-check` entries of a checkov config with the comment on their line ("" when none)."""
    reasons: dict[str, str] = {}
    in_skips = False
    for line in config_text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace() and not line.startswith("-"):
            in_skips = line.split(":", 1)[0].strip() == "skip-check"
            continue
        match = SKIP_LINE.match(line)
        if in_skips and match:
            reasons[match["check"]] = match["reason"] or ""
    return reasons


def reports_of(output: str) -> list[dict[str, Any]]:
    """checkov's JSON output as a list of per-framework reports (it prints one object for one)."""
    parsed = json.loads(output)
    reports = parsed if isinstance(parsed, list) else [parsed]
    return [report for report in reports if "check_type" in report]


def results(reports: list[dict[str, Any]], kind: str) -> Iterator[dict[str, Any]]:
    """Every result of one kind (`passed_checks`, `failed_checks`, `skipped_checks`)."""
    for report in reports:
        yield from report["results"][kind]


def describe(result: Mapping[str, Any]) -> str:
    first, last = result.get("file_line_range") or (0, 0)
    return (
        f"{result['check_id']} {result['check_name']}\n"
        f"    {result['resource']} in {result['file_path'].lstrip('/')}:{first}-{last}"
    )


def base_image_problems(dockerfile: str) -> list[str]:
    """Why a Dockerfile's base images are not pinned, or [].

    Stands in for checkov's CKV_DOCKER_7, which cannot see through `FROM ${ARG}`: build arguments are
    resolved from their defaults first. Pinned means a tag holding a version (a digit, not `latest`)
    or a digest; an earlier stage and `scratch` need none.
    """
    arguments: dict[str, str] = {}
    stages: set[str] = set()
    problems = []
    logical = re.sub(r"\\\n", " ", dockerfile)
    for line in logical.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        instruction = words[0].upper()
        if instruction == "ARG" and len(words) > 1:
            name, given, default = words[1].partition("=")
            if given:
                arguments[name] = default.strip("\"'")
        elif instruction == "FROM":
            rest = [word for word in words[1:] if not word.startswith("--")]
            if not rest:
                problems.append(f"{line.strip()}: names no image")
                continue
            if len(rest) >= 3 and rest[1].lower() == "as":
                stages.add(rest[2])
            image = re.sub(
                r"\$\{(\w+)\}|\$(\w+)",
                lambda match: arguments.get(match[1] or match[2], match[0]),
                rest[0],
            )
            problem = _unpinned(image, stages)
            if problem:
                problems.append(f"{line.strip()}: {problem}")
    return problems


def _unpinned(image: str, stages: set[str]) -> str | None:
    if "$" in image:
        return f"{image} uses a build argument without a default"
    if image in stages or image == "scratch":
        return None
    if re.search(r"@sha256:[0-9a-f]{64}$", image):
        return None
    name = image.rsplit("/", 1)[-1]
    if ":" not in name:
        return f"{image} has no tag (it means latest)"
    tag = name.split(":", 1)[1]
    if tag == "latest" or not re.search(r"\d", tag):
        return f"{image}: tag {tag!r} is not a version"
    return None


# Running checkov -------------------------------------------------------------------------------


def checkov() -> str:
    if TOOLS_CHECKOV.is_file():
        return str(TOOLS_CHECKOV)
    found = shutil.which("checkov")
    if found is None:
        pytest.skip(
            "checkov is not installed: `make tools` installs it into .venv-tools/ "
            "(its pins conflict with requirements.lock, so it has a virtualenv of its own)"
        )
    return found


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize` renders the kustomizations")
    return found


def run_checkov(folder: Path, *arguments: str) -> list[dict[str, Any]]:
    """checkov on `folder`, from inside it, with a HOME of its own: no config file but the one passed
    is picked up, nothing is downloaded (not even the check for a newer checkov)."""
    environment = {**os.environ, "HOME": str(folder), "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}
    done = subprocess.run(
        [checkov(), "--directory", str(folder), "--output", "json", *arguments],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # 0: nothing failed; 1: findings (reported in the JSON). Anything else is checkov itself failing.
    assert done.returncode in (0, 1), f"checkov failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return reports_of(done.stdout)


@pytest.fixture(scope="module")
def scanned_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What gets scanned: rendered/<kustomization>.yaml and images/<image>/Dockerfile."""
    folder = tmp_path_factory.mktemp("policy")
    (folder / "rendered").mkdir()
    for name, kustomization in RENDERED.items():
        done = subprocess.run(
            [kubectl(), "kustomize", str(kustomization)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"kubectl kustomize {kustomization} failed:\n{done.stderr}"
        (folder / "rendered" / f"{name}.yaml").write_text(done.stdout, encoding="utf-8")
    for dockerfile in DOCKERFILES:
        target = folder / dockerfile.relative_to(REPO)
        target.parent.mkdir(parents=True)
        shutil.copyfile(dockerfile, target)
    return folder


@pytest.fixture(scope="module")
def report(scanned_folder: Path) -> list[dict[str, Any]]:
    return run_checkov(scanned_folder, "--config-file", str(CONFIG))


# The configuration -----------------------------------------------------------------------------


def test_every_skip_names_a_check_and_says_why() -> None:
    text = CONFIG.read_text(encoding="utf-8")
    settings = yaml.safe_load(text)
    assert {"kubernetes", "dockerfile"} <= set(settings["framework"])
    assert settings["skip-download"] is True, "the scan must not depend on the vendor's platform"
    reasons = skip_reasons(text)
    assert sorted(reasons) == sorted(settings["skip-check"]), "one skip per line, each a list entry"
    assert len(settings["skip-check"]) == len(set(settings["skip-check"])), "a check is skipped twice"
    for check, reason in reasons.items():
        assert CHECK_ID.match(check), f"{check} is not a checkov check id"
        assert len(reason) >= MIN_REASON, f"{check} is skipped without a reason (`- {check}  # why`)"


def test_skip_reasons_reads_the_comment_of_each_entry() -> None:
    text = (
        "framework:\n  - kubernetes  # not a skip\n"
        "skip-check:\n"
        "  - CKV_K8S_15  # pulled from the node's cache\n"
        "  # a comment line in between\n"
        "  - CKV2_K8S_6\n"
        "skip-download: true\n"
    )
    assert skip_reasons(text) == {"CKV_K8S_15": "pulled from the node's cache", "CKV2_K8S_6": ""}


# The scan --------------------------------------------------------------------------------------


def test_manifests_samples_and_dockerfiles_pass_the_policy_scan(report: list[dict[str, Any]]) -> None:
    failed = [describe(result) for result in results(report, "failed_checks")]
    assert not failed, (
        f"{len(failed)} policy findings: fix them, or skip the check in .checkov.yaml with a reason\n"
        + "\n".join(failed)
    )


def test_the_scan_read_every_file(report: list[dict[str, Any]], scanned_folder: Path) -> None:
    """A scan that parsed nothing passes too: check that it saw every object and every Dockerfile."""
    by_type = {entry["check_type"]: entry for entry in report}
    assert {"kubernetes", "dockerfile"} <= set(by_type), sorted(by_type)
    for entry in report:
        assert entry["summary"]["parsing_errors"] == 0, entry["results"].get("parsing_errors")
    rendered = [
        document
        for path in sorted((scanned_folder / "rendered").glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if document
    ]
    assert by_type["kubernetes"]["summary"]["resource_count"] >= len(rendered)
    checked = {
        result["file_path"].lstrip("/") for result in results([by_type["dockerfile"]], "passed_checks")
    }
    assert checked == {str(path.relative_to(REPO)) for path in DOCKERFILES}
    deployment_checks = [
        result
        for result in results([by_type["kubernetes"]], "passed_checks")
        if result["resource"] == "Deployment.autoscene-system.autoscene-operator"
    ]
    assert len(deployment_checks) > 20, "the operator Deployment was not checked"


def test_inline_skips_give_a_reason(report: list[dict[str, Any]]) -> None:
    for result in results(report, "skipped_checks"):
        comment = result["check_result"].get("suppress_comment") or NO_REASON
        assert comment != NO_REASON and len(comment) >= MIN_REASON, (
            f"{describe(result)}\n    is skipped without a reason: checkov.io/skip1: {result['check_id']}=why"
        )


def test_every_skipped_check_still_has_something_to_skip(scanned_folder: Path) -> None:
    """A skip whose check would now pass hides future regressions: remove it from .checkov.yaml."""
    skipped = sorted(skip_reasons(CONFIG.read_text(encoding="utf-8")))
    settings = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    unskipped = run_checkov(
        scanned_folder, "--framework", *settings["framework"], "--skip-download", "--check", ",".join(skipped)
    )
    firing = {result["check_id"] for result in results(unskipped, "failed_checks")}
    assert [check for check in skipped if check not in firing] == []


# Base images (checkov's CKV_DOCKER_7, through build arguments) ---------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: str(path.relative_to(REPO)))
def test_base_images_are_pinned(dockerfile: Path) -> None:
    assert base_image_problems(dockerfile.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "dockerfile, problems",
    [
        ("ARG BASE=python:3.11.13-slim\nFROM ${BASE} AS build\nFROM $BASE\nCOPY --from=build /a /a\n", []),
        ("FROM python:3.11@sha256:" + "a" * 64 + "\n", []),
        ("FROM --platform=$BUILDPLATFORM golang:1.23 AS build\nFROM scratch\nFROM build\n", []),
        ("FROM registry.local:5000/team/python:3.11\n", []),
        ("FROM python\n", ["FROM python: python has no tag (it means latest)"]),
        (
            "FROM python:latest AS a\n",
            ["FROM python:latest AS a: python:latest: tag 'latest' is not a version"],
        ),
        ("FROM python:slim\n", ["FROM python:slim: python:slim: tag 'slim' is not a version"]),
        (
            "FROM registry.local:5000/python\n",
            ["FROM registry.local:5000/python: registry.local:5000/python has no tag (it means latest)"],
        ),
        ("ARG BASE\nFROM ${BASE}\n", ["FROM ${BASE}: ${BASE} uses a build argument without a default"]),
        ("ARG BASE=python:3.11\nFROM \\\n    ${BASE}\n", []),
    ],
)
def test_base_image_problems(dockerfile: str, problems: list[str]) -> None:
    assert base_image_problems(dockerfile) == problems
