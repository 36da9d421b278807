"""The documentation: every page is in the mkdocs nav and every nav entry exists, relative links
and their anchors resolve, the API reference's objects import, and (with mkdocs installed) the
site builds with ``mkdocs build --strict``."""

import importlib
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[ \t]*$", re.M | re.S)
_INLINE_CODE = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
_INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
_REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


class _Loader(yaml.SafeLoader):
    """A safe loader that reads tags such as ``!!python/name:`` or ``!ENV`` as plain values."""


_Loader.add_multi_constructor("", lambda loader, suffix, node: None)


def _config() -> dict:
    return yaml.load(MKDOCS_YML.read_text(encoding="utf-8"), Loader=_Loader)


def _nav_pages(nav) -> list[str]:
    """Every page path in a (nested) mkdocs nav; external URLs are left out."""
    if isinstance(nav, str):
        return [] if _SCHEME.match(nav) else [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return []


NAV = _nav_pages(_config().get("nav", []))
PAGES = sorted(DOCS.rglob("*.md"))
LINKED_FILES = [*PAGES, ROOT / "README.md"]


def _strip_code(text: str) -> str:
    """Markdown with fenced blocks and inline code spans removed (links there are examples)."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def _slugify(text: str) -> str:
    """The anchor Python-Markdown's ``toc`` extension (mkdocs' default) gives a heading."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _github_slug(text: str) -> str:
    """The anchor GitHub gives a heading (README links are read there)."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    """The heading anchors of a Markdown file, as mkdocs and GitHub write them."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for _, title in _HEADING.findall(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).replace("`", "")  # links to text, no backticks
        text = re.sub(r"<[^>]+>", "", text)
        for slug in {_slugify(text), _github_slug(text)}:
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}_{count}")
    return anchors


def _relative_links(path: Path) -> list[str]:
    text = _strip_code(path.read_text(encoding="utf-8"))
    links = _INLINE_LINK.findall(text) + _REFERENCE_DEFINITION.findall(text)
    return [link for link in links if not _SCHEME.match(link) and not link.startswith("//")]


def _api_names() -> list[str]:
    api = DOCS / "api.md"
    if not api.is_file():
        return []
    return re.findall(r"^:::\s+(\S+)", _FENCE.sub("", api.read_text(encoding="utf-8")), re.M)


# ---- (a) the nav ----------------------------------------------------------------------------


def test_nav_is_not_empty():
    assert NAV, f"{MKDOCS_YML.name} has no nav"
    assert len(NAV) == len(set(NAV)), f"pages listed twice in the nav: {sorted({p for p in NAV if NAV.count(p) > 1})}"


def test_every_page_is_in_the_nav():
    pages = {page.relative_to(DOCS).as_posix() for page in PAGES}
    missing = sorted(pages - set(NAV))
    assert not missing, f"docs pages missing from the nav of {MKDOCS_YML.name}: {missing}"


@pytest.mark.parametrize("page", NAV)
def test_nav_entry_exists(page):
    assert (DOCS / page).is_file(), f"{MKDOCS_YML.name} lists {page} in its nav, but docs/{page} does not exist"


# ---- (b) links and anchors --------------------------------------------------------------------


@pytest.mark.parametrize("path", LINKED_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path):
    broken = []
    for link in _relative_links(path):
        target, _, anchor = link.partition("#")
        if target.startswith("/"):
            broken.append(f"{link} (absolute path: use a relative link)")
            continue
        file = (path.parent / target).resolve() if target else path
        if not file.exists():
            broken.append(f"{link} (no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file})")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{link} (no heading #{anchor} in {file.relative_to(ROOT)})")
    assert not broken, f"{path.relative_to(ROOT)} has broken links:\n  " + "\n  ".join(broken)


def test_slugs_match_mkdocs():
    assert _slugify("What encode and dense_features return") == "what-encode-and-dense_features-return"
    assert _slugify("Prepared datasets (usdrl prepare)") == "prepared-datasets-usdrl-prepare"
    assert _slugify("Clips and batches: (N, C, T, V, M)") == "clips-and-batches-n-c-t-v-m"


# ---- (c) the API reference ---------------------------------------------------------------------


def _resolve(dotted: str):
    """Import the longest importable module prefix of ``dotted`` and fetch the rest as attributes."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError as exc:
            if exc.name is not None and not ".".join(parts[:split]).startswith(exc.name):
                raise  # the module exists but one of its own imports is missing
            continue
        for name in parts[split:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


def test_api_reference_has_entries():
    assert len(_api_names()) >= 10, "docs/api.md should document the public API with ::: blocks"


@pytest.mark.parametrize("name", _api_names())
def test_api_reference_entry_imports(name):
    assert _resolve(name) is not None


# ---- (d) the site builds -------------------------------------------------------------------------


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("mkdocstrings_handlers.python")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(MKDOCS_YML),
         "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert result.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(problems or [result.stderr[-3000:]])
    assert (tmp_path / "site" / "api" / "index.html").is_file()
