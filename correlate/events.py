"""Events the dialog tracker and the Recorder return to their shells."""

from __future__ import annotations

from typing import TYPE_CHECKING

from correlate.call import Call

if TYPE_CHECKING:
    from correlate.record import CallRecord


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


class FlowAdded:
    """A call's media came on a new flow (its spool records index the call's flow list)."""

    __slots__ = ("call",)

    def __init__(self, call: Call) -> None:
        self.call = call


class MediaActive:
    """Media of a call signalled elsewhere still reaches this process (the process with
    the signalling is told, so that it does not end the call as silent)."""

    __slots__ = ("call",)

    def __init__(self, call: Call) -> None:
        self.call = call


class CallMoved:
    """A call goes by another key from now on: media taken for unsignalled RTP turned out
    to be a call another process announced (``Recorder.announce``)."""

    __slots__ = ("call", "old_key")

    def __init__(self, call: Call, old_key: str) -> None:
        self.call = call
        self.old_key = old_key
        """The key the call had until now."""


class CallEnded:
    """The Recorder's word on a finished call: its record to write, or why nothing is."""

    __slots__ = ("call", "record", "skipped")

    def __init__(self, call: Call, record: CallRecord | None, skipped: str) -> None:
        self.call = call
        self.record = record
        """What a writer needs; None when the call is not recorded."""
        self.skipped = skipped
        """"" when recorded, else "policy" (its rule says so) or "unanswered" (an INVITE
        nobody answered, with no media)."""


Event = (CallStarted | MediaChanged | CallFinished | FlowAdded | CallEnded | CallMoved
         | MediaActive)
