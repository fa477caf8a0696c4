"""The media table: which call, and which side, receives at a given address and port."""

from __future__ import annotations

from correlate.call import Endpoint

# Endpoints tracked at once: RTP and RTCP for two sides of 50,000 concurrent calls, with room
# for re-INVITEs; beyond it announcements are refused and counted rather than growing forever.
MAX_ENDPOINTS = 262_144

RTP = 0
RTCP = 1
OTHER = 2  # a non-audio m= line (video, image/T.38): its packets are not this call's audio

Owner = tuple[str, int, int]
"""(call key, side that receives there, RTP, RTCP or OTHER)."""


class MediaTable:
    """Maps an announced (address, port) to the call and side that receive there."""

    def __init__(self, bound: int = MAX_ENDPOINTS) -> None:
        self._map: dict[Endpoint, Owner] = {}
        self._by_call: dict[str, list[Endpoint]] = {}
        self.bound = bound
        self.refused = 0
        """Announcements refused because the table was full."""

    def __len__(self) -> int:
        return len(self._map)

    def get(self, endpoint: Endpoint) -> Owner | None:
        return self._map.get(endpoint)

    def set_side(
        self, key: str, side: int, audio: list[Endpoint], other: list[Endpoint]
    ) -> None:
        """Record where ``side`` of call ``key`` receives: audio RTP endpoints (RTCP on the
        next port) and non-audio ones. New audio replaces the side's old endpoints; an
        SDP without audio (a T.38 offer that may yet be refused) only adds."""
        mine = self._by_call.setdefault(key, [])
        if audio:
            keep: list[Endpoint] = []
            for ep in mine:
                owner = self._map.get(ep)
                if owner is not None and owner[0] == key and owner[1] == side:
                    del self._map[ep]
                elif owner is not None and owner[0] == key:
                    keep.append(ep)
            mine[:] = keep
        entries = [(ep, k) for a, p in audio for ep, k in (((a, p), RTP), ((a, p + 1), RTCP))]
        entries += [(ep, OTHER) for ep in other]
        for ep, kind in entries:
            prior = self._map.get(ep)
            if kind == OTHER and prior is not None and prior[0] == key and prior[2] != OTHER:
                continue  # T.38 offered on the audio port: audio keeps it until replaced
            if prior is None and len(self._map) >= self.bound:
                self.refused += 1
                continue
            # The newest announcement wins: an address reused by a later call is theirs now.
            self._map[ep] = (key, side, kind)
            if prior is None or prior[0] != key:
                mine.append(ep)

    def drop_call(self, key: str) -> None:
        """Forget every endpoint of call ``key``."""
        for ep in self._by_call.pop(key, ()):
            owner = self._map.get(ep)
            if owner is not None and owner[0] == key:
                del self._map[ep]
