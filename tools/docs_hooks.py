"""MkDocs hooks: tables generated from the code at build time, so the reference cannot drift.

A page holds a marker; the hook replaces it with a table built from the one definition in the code:
`<!-- sightx:rejects -->` from sightx/contracts/rejects.py REASONS, `<!-- sightx:warnings -->` from
sightx/inference/warnings.py MESSAGES. A marker with no table fails the build.
"""

from __future__ import annotations

import re
from typing import Any


def _table(header: tuple[str, str], rows: dict[str, str]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    for code, text in rows.items():
        cell = text.replace("|", "\\|")
        lines.append(f"| `{code}` | {cell} |")
    return "\n".join(lines)


def _tables() -> dict[str, str]:
    from sightx.contracts.rejects import REASONS, UNREADABLE
    from sightx.inference.warnings import MESSAGES

    unreadable = ", ".join(f"`{r}`" for r in UNREADABLE)
    return {
        "rejects": _table(("reason", "meaning"), REASONS) + f"\n\n`sightx-explore` counts {unreadable} as unreadable photos.",
        "warnings": _table(("code", "message"), MESSAGES),
    }


def on_page_markdown(markdown: str, **_: Any) -> str:
    if "<!-- sightx:" not in markdown:
        return markdown
    tables = _tables()

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in tables:
            raise ValueError(f"unknown docs marker sightx:{name}")
        return tables[name]

    return re.sub(r"<!-- sightx:([a-z]+) -->", fill, markdown)
