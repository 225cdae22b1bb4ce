"""matplotlib for relaxd's plots, imported only when a plot is asked for (headless)::

    plt = pyplot()
    fig, ax = plt.subplots()
    ...
    save_figure(fig, "levels.png", dpi=100)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relaxd.core.errors import RelaxdError


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the headless Agg backend; a one-line error without it."""
    try:
        import matplotlib
    except ImportError:
        raise RelaxdError("plotting needs matplotlib: pip install 'relaxd[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out: str | Path, dpi: int = 100) -> None:
    """Write ``fig`` as a PNG and close it; an unwritable path is a one-line error."""
    try:
        fig.tight_layout()
        fig.savefig(out, dpi=dpi)
    except OSError as exc:
        raise RelaxdError(f"cannot write plot: {exc.strerror}", out) from None
    finally:
        pyplot().close(fig)
