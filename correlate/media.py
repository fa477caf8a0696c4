"""The media table: which call, and which side, receives at a given address and port."""

from __future__ import annotations

from correlate.call import Endpoint

# Endpoints tracked at once: RTP and RTCP for two sides of 50,000 concurrent calls, with room
# for re-INVITEs; beyond it announcements are refused and counted rather than growing forever.
MAX_ENDPOINTS = 262_144

RTP = 0
RTCP = 1

Owner = tuple[str, int, int]
"""(call key, side that receives there, RTP or RTCP)."""


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

    def set_side(self, key: str, side: int, endpoints: list[Endpoint]) -> None:
        """Replace what ``side`` of call ``key`` receives on with ``endpoints`` (RTP ports)."""
        mine = self._by_call.setdefault(key, [])
        keep: list[Endpoint] = []
        for ep in mine:
            owner = self._map.get(ep)
            if owner is not None and owner[0] == key and owner[1] == side:
                del self._map[ep]
            elif owner is not None and owner[0] == key:
                keep.append(ep)
        for addr, port in endpoints:
            for ep, kind in (((addr, port), RTP), ((addr, port + 1), RTCP)):
                if ep not in self._map and len(self._map) >= self.bound:
                    self.refused += 1
                    continue
                # The newest announcement wins: an address reused by a later call is theirs now.
                self._map[ep] = (key, side, kind)
                keep.append(ep)
        self._by_call[key] = keep

    def drop_call(self, key: str) -> None:
        """Forget every endpoint of call ``key``."""
        for ep in self._by_call.pop(key, ()):
            owner = self._map.get(ep)
            if owner is not None and owner[0] == key:
                del self._map[ep]
