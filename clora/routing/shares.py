"""How inputs were routed: the share sent to a task, falling back, and sent to the wrong task."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

ROUTED_SOURCES = ("trigger", "learned", "arrow")


@dataclass(frozen=True)
class RoutingShares:
    """Counts over ``total`` inputs. ``known``: inputs whose true task was given; ``own`` and
    ``misrouted`` count among those the ones routed to their own and to another task."""

    total: int
    routed: int
    fallback: int
    known: int = 0
    own: int = 0
    misrouted: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        """One line for people: ``routing: 45 of 48 routed (93.8%), 3 fell back (6.2%); ...``."""
        pct = lambda k, n: f"{100 * k / n:.1f}%" if n else "n/a"  # noqa: E731
        text = (f"routing: {self.routed} of {self.total} routed ({pct(self.routed, self.total)}), "
                f"{self.fallback} fell back ({pct(self.fallback, self.total)})")
        if self.known:
            text += (f"; of {self.known} with a known task: {self.own} to their own ({pct(self.own, self.known)}), "
                     f"{self.misrouted} to another ({pct(self.misrouted, self.known)})")
        return text


def routing_shares(routes: Sequence, expected: Sequence[str | None] | None = None) -> RoutingShares:
    """Shares of ``routes`` (anything with ``.task`` and ``.source``: routes or predictions);
    ``expected[i]`` is input i's true task, or None when unknown."""
    expected = list(expected) if expected is not None else [None] * len(routes)
    routed = [r.source in ROUTED_SOURCES for r in routes]
    known = [(r, e) for r, ok, e in zip(routes, routed, expected) if e is not None]
    return RoutingShares(
        total=len(routes), routed=sum(routed), fallback=sum(r.source == "fallback" for r in routes),
        known=len(known), own=sum(r.source in ROUTED_SOURCES and r.task == e for r, e in known),
        misrouted=sum(r.source in ROUTED_SOURCES and r.task != e for r, e in known))
