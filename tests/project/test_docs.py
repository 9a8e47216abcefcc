"""The documentation stays navigable and true to the code: the README is a short front door,
every relative link in it and in docs/ resolves, and the metrics the docs list are the metrics
the components register."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from webhookmaster.settings import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
DOCS = PROJECT_ROOT / "docs"
PACKAGES = (
    "ingest_gateway",
    "delivery_agents",
    "retry_scheduler",
    "status_projector",
    "schemas",
    "webhookmaster",
)
MARKDOWN = [README, PROJECT_ROOT / "bench" / "README.md", *sorted(DOCS.rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
METRIC = re.compile(r"webhookmaster_[a-z_]+")


def prose(path: Path) -> str:
    """The file's text without its fenced code blocks (links there are examples, not links)."""
    return FENCE.sub("", path.read_text())


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a markdown file."""
    slugs = set()
    for heading in re.findall(r"^#+ (.+)$", prose(path), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        slugs.add(slug)
    return slugs


def relative_links(path: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(prose(path))
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)
    ]


def test_readme_is_a_front_door() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, len(lines)
    text = README.read_text()
    for command in ("make run", "make test", "/api/subscriptions/", "/api/ingest/", "/api/status/"):
        assert command in text, command
    for folder in (*PACKAGES, "deploy", "bench", "tests", "docs"):
        assert f"| `{folder}/` |" in text, folder
        assert (PROJECT_ROOT / folder).is_dir(), folder


def test_every_document_is_reachable_from_the_readme() -> None:
    linked = {(README.parent / t.split("#")[0]).resolve() for t in relative_links(README)}
    for path in MARKDOWN[1:]:
        assert path.resolve() in linked, path.relative_to(PROJECT_ROOT)


def test_every_relative_link_resolves() -> None:
    checked = 0
    for path in MARKDOWN:
        for target in relative_links(path):
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(PROJECT_ROOT)} -> {target}"
            assert dest.exists(), where
            assert dest.is_relative_to(PROJECT_ROOT), where
            if anchor:
                assert dest.suffix == ".md" and anchor in anchors(dest), where
            checked += 1
    assert checked >= 20, checked


def exposed_metrics() -> tuple[set[str], set[str]]:
    """Every webhookmaster metric family the package code registers (each module that uses
    prometheus_client is imported), and every name Prometheus exposes for them (with the _total,
    _count, _sum and _bucket suffixes)."""
    from prometheus_client import REGISTRY

    for package in PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            if "prometheus_client" in path.read_text():
                module = path.relative_to(PROJECT_ROOT).with_suffix("").parts
                importlib.import_module(".".join(module))
    families = {m.name for m in REGISTRY.collect() if m.name.startswith("webhookmaster_")}
    exposed = {
        f + suffix for f in families for suffix in ("", "_total", "_count", "_sum", "_bucket")
    }
    return families, exposed


def test_documented_metrics_are_the_registered_ones() -> None:
    families, exposed = exposed_metrics()
    for path in MARKDOWN:
        for name in METRIC.findall(prose(path)):
            assert name in exposed, (path.relative_to(PROJECT_ROOT), name)
    documented = set(METRIC.findall((DOCS / "operations.md").read_text()))
    for family in families:
        assert {family, family + "_total"} & documented, family
