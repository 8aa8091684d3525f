"""mkdocs hooks for the documentation site (``hooks:`` in mkdocs.yml).

``on_config`` lists the guides other branches are writing (``OPTIONAL_PAGES``)
in the nav once their file exists, so merging one needs no change here.

The docstrings use Sphinx's cross-reference roles (``:class:`Operation```,
``:meth:`~Operation.abort```), which mkdocstrings leaves as literal text.  This
hook turns each one into a plain code span with the name Sphinx would show (the
last component after a ``~``), so the API reference reads cleanly without
rewriting the docstrings.
"""

from __future__ import annotations

import os
import re
from typing import Any

_ROLE = re.compile(r":(?:class|meth|func|attr|exc|data|mod|obj|const):<code>(~?)([^<]*)</code>")


def _shown(match: re.Match[str]) -> str:
    tilde, target = match.group(1), match.group(2)
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    """Replace Sphinx roles left in the rendered docstrings by code spans."""
    return _ROLE.sub(_shown, html)


#: Pages other branches are writing: listed in the nav when the file exists,
#: (section, title, file).  Any other page missing from the nav fails the strict
#: build (``validation: nav: omitted_files: warn`` in mkdocs.yml).
OPTIONAL_PAGES = [
    ("Guides", "Ctrl-C and interrupts", "interrupts.md"),
    ("Guides", "asyncio", "asyncio.md"),
    ("Guides", "SQLAlchemy and pandas", "sqlalchemy.md"),
    ("Drivers", "ClickHouse", "clickhouse.md"),
]


def _listed(nav: Any, filename: str) -> bool:
    if isinstance(nav, str):
        return nav == filename
    if isinstance(nav, dict):
        return any(_listed(v, filename) for v in nav.values())
    if isinstance(nav, list):
        return any(_listed(v, filename) for v in nav)
    return False


def on_config(config: Any, **kwargs: Any) -> Any:
    """Add the optional pages that exist to their nav section."""
    nav = config.get("nav")
    if not isinstance(nav, list):
        return config
    for section, title, filename in OPTIONAL_PAGES:
        if _listed(nav, filename) or not os.path.isfile(
                os.path.join(config["docs_dir"], filename)):
            continue
        for entry in nav:
            if isinstance(entry, dict) and isinstance(entry.get(section), list):
                entry[section].append({title: filename})
                break
        else:
            nav.append({title: filename})
    return config
