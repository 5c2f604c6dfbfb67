"""Pages from Jinja2 templates (``templates/``): autoescaped, self-contained, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from ..io_utils import atomic_write_text

_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=select_autoescape(["html", "j2"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _fmt(v: Any, digits: int = 3) -> str:
    """A number for a table cell: ``digits`` decimals, "n/a" for None."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def shown(text: str) -> str:
    """``text`` as a page shows it: the bytes of a file name that are not UTF-8 (which Python holds as
    surrogate escapes) become the replacement character U+FFFD; links keep the real bytes (:func:`page_link`)."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no file name decodes to
        raw = text.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def _shown_all(obj: Any) -> Any:
    """``obj`` with every string in it (keys too) as :func:`shown`."""
    if isinstance(obj, str):
        return shown(obj)
    if isinstance(obj, dict):
        return {_shown_all(k): _shown_all(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_shown_all(v) for v in obj]
    return obj


def _json(obj: Any) -> Markup:
    """JSON safe inside <script type="application/json">: no "<" can close the element (JSON reads
    the escape back as "<"), and names as the page shows them (:func:`shown`)."""
    return Markup(json.dumps(_shown_all(obj), sort_keys=True).replace("<", "\\u003c"))


def page_link(path: str) -> str:
    """A relative file path as a link from a page: its bytes percent-encoded, so that a name with "#",
    "?" or "%" names the file rather than a fragment, a query or an escape, and a name that is not
    UTF-8 (Latin-1 bytes, held as surrogate escapes) links to the file it names."""
    return quote(os.fsencode(path), safe="/")


def colour_scale(cmap: str = "jet", stops: int = 11) -> str:
    """A CSS gradient of ``cmap`` over the heatmaps' fixed range 0..1 (:func:`cavga.visualize.heatmap_overlay`)."""
    from matplotlib import colormaps

    hexes = ["#" + "".join(f"{round(255 * c):02x}" for c in colormaps[cmap](i / (stops - 1))[:3]) for i in range(stops)]
    return f"linear-gradient(to right, {', '.join(hexes)})"


_ENV.filters["fmt"] = _fmt
_ENV.filters["tojson_safe"] = _json
_ENV.globals["colour_scale"] = colour_scale


def render_page(template: str, path: str | Path, **context: Any) -> Path:
    """Render ``templates/<template>`` with ``context`` into ``path``; the names in it as :func:`shown`
    (a page is UTF-8, and its links are percent-encoded already)."""
    return atomic_write_text(path, shown(_ENV.get_template(template).render(**context)))
