"""Events the dialog tracker returns to its shell."""

from __future__ import annotations

from correlate.call import Call


class CallStarted:
    """An initial INVITE created a call."""

    __slots__ = ("call",)

    def __init__(self, call: Call) -> None:
        self.call = call
        """The new call."""


class MediaChanged:
    """A side announced new media; the media table already reflects it."""

    __slots__ = ("call", "side")

    def __init__(self, call: Call, side: int) -> None:
        self.call = call
        """The call."""
        self.side = side
        """The side whose receive addresses changed."""


class CallFinished:
    """A call is over and nothing more will be added to it: write it out."""

    __slots__ = ("call",)

    def __init__(self, call: Call) -> None:
        self.call = call
        """The finished call, with status, end time and end reason set."""


Event = CallStarted | MediaChanged | CallFinished
