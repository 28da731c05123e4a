"""Packaging: what the operator depends on, what its image installs, and how large that image is.

The operator's runtime dependencies (pyproject.toml's `dependencies`) are what its modules import; the
sandbox's and the frame extractor's go to the extras `sandbox` and `extractor`. The operator image
installs exactly images/operator/requirements.lock (pinned, with hashes, `--require-hashes`) and runs
as a numeric non-root user. Dependency trees are read from the installed distributions' metadata, so
these tests need no network.
"""

import ast
import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "operator" / "autoscene"
SANDBOX = PACKAGE / "sandbox"
DOCKERFILE = REPO / "images" / "operator" / "Dockerfile"
IMAGE_LOCK = REPO / "images" / "operator" / "requirements.lock"
LOCK = REPO / "requirements.lock"
EXTRACTOR_REQUIREMENTS = REPO / "images" / "frame-extractor" / "requirements.txt"
# Modules outside sandbox/ that only the sandbox and its demo use: the custom objects' schema
# validation (the embedded API server's) and the generated demo clip.
SANDBOX_ONLY = {"schemas.py", "sample_video.py"}
# What the operator process and the CLI's cluster commands load.
ENTRY_POINTS = ["autoscene.cli", "autoscene.runtime", "autoscene.handlers", "autoscene.cluster_upload"]
# The virtualenv layer of the image; the kubernetes client alone is about 125 MB of generated models.
VENV_BUDGET_MB = 220


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def runtime_requirements() -> list[str]:
    return project()["dependencies"]


def extra(name: str) -> list[str]:
    return project()["optional-dependencies"][name]


def closure(requirements: Iterable[str]) -> set[str]:
    """The distributions these requirements install on this Python and platform (canonical names)."""
    seen: set[str] = set()
    todo = [(Requirement(text), "") for text in requirements]
    while todo:
        requirement, for_extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": for_extra}):
            continue
        name = canonical(requirement.name)
        wanted = {(name, extra_name) for extra_name in ("", *requirement.extras)}
        if all(key in seen for key in wanted):
            continue
        seen.update(wanted)
        for text in importlib.metadata.requires(name) or []:
            for extra_name in ("", *requirement.extras):
                todo.append((Requirement(text), extra_name))
    return {name for name, _ in seen}


def pins(lock: Path) -> dict[str, str]:
    found = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if match:
            found[canonical(match[1])] = match[2]
    return found


def imported_distributions(paths: Iterable[Path]) -> set[str]:
    """The third-party distributions whose modules these files import (at any depth in the file)."""
    by_module = importlib.metadata.packages_distributions()
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top == "autoscene":
                    continue
                assert top in by_module, (
                    f"{path.name} imports {top}, which no installed distribution provides"
                )
                names.update(canonical(name) for name in by_module[top])
    return names


def operator_modules() -> list[Path]:
    return [path for path in PACKAGE.glob("*.py") if path.name not in SANDBOX_ONLY]


def sandbox_modules() -> list[Path]:
    return [*SANDBOX.rglob("*.py"), *(PACKAGE / name for name in SANDBOX_ONLY)]


def image_size_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "image_size", REPO / "images" / "operator" / "image_size.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# pyproject.toml ------------------------------------------------------------------------------------


def test_runtime_dependencies_are_what_the_operator_imports() -> None:
    declared = {canonical(Requirement(text).name) for text in runtime_requirements()}
    imported = imported_distributions(operator_modules())
    assert declared <= imported, f"declared but never imported: {sorted(declared - imported)}"
    # Imported directly, installed by a declared one (urllib3 and websocket-client come with kubernetes).
    assert imported <= closure(runtime_requirements()), sorted(imported - closure(runtime_requirements()))
    assert {"kopf", "kubernetes", "prometheus-client", "typer", "rich"} <= declared


def test_the_operator_starts_with_its_runtime_dependencies_alone() -> None:
    """The entry points import in an interpreter where every other installed distribution is hidden,
    as in the image (optional imports, e.g. the kubernetes client's of kubernetes-validate, then fail
    quietly as they would there)."""
    runtime = closure(runtime_requirements())
    hidden = sorted(
        module
        for module, distributions in importlib.metadata.packages_distributions().items()
        if module != "autoscene" and not {canonical(name) for name in distributions} & runtime
    )
    probe = (
        "import importlib, importlib.abc, importlib.util, json, sys\n"
        f"hidden = set({hidden!r})\n"
        "before = set(sys.modules)\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in hidden:\n"
        "            raise ModuleNotFoundError(f'no module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        # Asked whether a hidden module exists (python-json-logger asks of orjson), answer as for an
        # absent one: None, not an error.
        "find_spec = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, package=None: (\n"
        "    None if name.split('.')[0] in hidden else find_spec(name, package))\n"
        f"for name in {ENTRY_POINTS!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in set(sys.modules) - before})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"the operator needs more than its runtime dependencies:\n{done.stderr}"
    by_module = importlib.metadata.packages_distributions()
    loaded = {canonical(name) for module in json.loads(done.stdout) for name in by_module.get(module, [])}
    assert "kopf" in loaded and "kubernetes" in loaded and "prometheus-client" in loaded
    assert loaded - {"autoscene"} <= runtime


def test_sandbox_extra_covers_what_the_sandbox_imports() -> None:
    imported = imported_distributions(sandbox_modules())
    covered = closure([*runtime_requirements(), *extra("sandbox")])
    assert imported <= covered, f"the sandbox imports {sorted(imported - covered)}, in no extra"
    assert {"kmock", "cryptography", "jsonschema"} <= {
        canonical(Requirement(text).name) for text in extra("sandbox")
    }


def test_extractor_extra_is_the_extractor_image_requirements() -> None:
    image = {
        canonical(Requirement(line).name)
        for line in EXTRACTOR_REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {canonical(Requirement(text).name) for text in extra("extractor")} == image


def test_requirements_lock_pins_all_that_make_installs() -> None:
    lines = [line for line in LOCK.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[^\s=<>~!]+", line) for line in lines), (
        "exact pins only"
    )
    locked = pins(LOCK)
    everything = closure([*runtime_requirements(), *extra("sandbox"), *extra("extractor")])
    assert everything <= set(locked), f"not pinned in requirements.lock: {sorted(everything - set(locked))}"
    for name in everything:
        assert importlib.metadata.version(name) == locked[name], f"{name} installed differs from the lock"


# The operator image --------------------------------------------------------------------------------


def test_image_lock_is_exactly_the_runtime_dependencies_hashed() -> None:
    image = pins(IMAGE_LOCK)
    runtime = closure(runtime_requirements())
    assert set(image) == runtime, (
        f"missing {sorted(runtime - set(image))}, extra {sorted(set(image) - runtime)}"
    )
    locked = pins(LOCK)
    assert {name: locked[name] for name in image} == image, (
        "the image lock's versions are requirements.lock's"
    )
    # Every pin followed by the hashes of its files.
    text = IMAGE_LOCK.read_text()
    entries = re.findall(r"^[A-Za-z0-9].*?(?=^[A-Za-z0-9]|\Z)", text, re.MULTILINE | re.DOTALL)
    assert len(entries) == len(image)
    for entry in entries:
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), f"no hash for {entry.split()[0]}"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_image_installs_the_hashed_lock_and_nothing_else() -> None:
    instructions = dockerfile_instructions()
    copies = [args for word, args in instructions if word == "COPY"]
    assert "images/operator/requirements.lock ./" in copies
    installs = [
        args
        for word, args in instructions
        if word == "RUN"
        for args in re.split(r"&&", args)
        if re.search(r"\bpip\b.*\binstall\b", args)
    ]
    from_lock = [args for args in installs if "-r requirements.lock" in args]
    assert len(from_lock) == 1, installs
    (lock_install,) = from_lock
    for option in ("--require-hashes", "--no-deps", "--only-binary=:all:"):
        assert option in lock_install, f"the lock's install lacks {option}"
    # Any other install is the package's own wheel, and brings no dependency of its own.
    for args in installs:
        if args is not lock_install:
            assert "--no-deps" in args and re.search(r"/wheels/autoscene-\*\.whl", args), args


def test_image_runs_as_a_numeric_non_root_user() -> None:
    instructions = dockerfile_instructions()
    runtime_start = max(index for index, (word, _) in enumerate(instructions) if word == "FROM")
    users = [args for word, args in instructions[runtime_start:] if word == "USER"]
    assert users, "the runtime stage sets no USER"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1].strip())
    assert match, f"USER {users[-1]} is not numeric (runAsNonRoot cannot check a name)"
    assert int(match[1]) != 0 and (match[2] is None or int(match[2]) != 0)


def test_image_size_estimate(capsys: pytest.CaptureFixture[str]) -> None:
    """The virtualenv layer measured from this environment's copies of the locked distributions."""
    sizing = image_size_module()
    parts = sizing.installed_sizes(sizing.locked())
    venv_mb = sum(parts.values()) / sizing.MB
    with capsys.disabled():
        print(
            "\n" + sizing.report(sum(parts.values()), parts, sizing.BASE_IMAGE_MB, "installed distributions")
        )
    assert set(parts) == set(pins(IMAGE_LOCK))
    assert 10 < venv_mb < VENV_BUDGET_MB, f"the operator's virtualenv is {venv_mb:.0f} MB"
    for heavy in ("numpy", "opencv-python-headless", "av", "kmock", "cryptography"):
        assert heavy not in parts
