"""mkdocs hooks for the documentation site (``hooks:`` in mkdocs.yml).

The docstrings use Sphinx's cross-reference roles (``:class:`Operation```,
``:meth:`~Operation.abort```), which mkdocstrings leaves as literal text.  This
hook turns each one into a plain code span with the name Sphinx would show (the
last component after a ``~``), so the API reference reads cleanly without
rewriting the docstrings.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|meth|func|attr|exc|data|mod|obj|const):<code>(~?)([^<]*)</code>")


def _shown(match: re.Match[str]) -> str:
    tilde, target = match.group(1), match.group(2)
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    """Replace Sphinx roles left in the rendered docstrings by code spans."""
    return _ROLE.sub(_shown, html)
