"""Matplotlib set-up shared by every chart: headless backend and a Hangul font.

The machines kolm runs on often have no Korean font, and matplotlib then draws
Hangul as empty boxes. `koreanize-matplotlib` ships NanumGothic inside the
package; `setup_korean_font()` registers it once.
"""

from __future__ import annotations

from typing import Any

__all__ = ["setup_korean_font", "new_figure"]

_READY = False


def setup_korean_font() -> str | None:
    """Use the Agg backend and a font with Hangul glyphs; return the font family used."""
    global _READY
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    family = None
    try:
        import koreanize_matplotlib  # noqa: F401  (registers NanumGothic and sets rcParams)

        family = plt.rcParams["font.family"][0] if plt.rcParams["font.family"] else None
    except ImportError:
        pass
    plt.rcParams["axes.unicode_minus"] = False  # the Unicode minus has no glyph in NanumGothic
    plt.rcParams["mathtext.fontset"] = (
        "dejavusans"  # log-axis labels (10^-1) are mathtext: keep a font with every glyph
    )
    _READY = True
    return family


def new_figure(width: float = 6.0, height: float = 3.5) -> tuple[Any, Any]:
    """A figure and axes with the Korean font ready."""
    if not _READY:
        setup_korean_font()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    return fig, ax
