"""The media table: which call, and which side, receives at a given address and port."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from correlate.call import Endpoint

# Calls remembered per shared endpoint besides the newest; a media server shares one
# address among all its calls, lookups then go by the other end, which is not shared.
MAX_SHARED = 64
# Endpoints tracked at once: RTP and RTCP for two sides of 50,000 concurrent calls, with room
# for re-INVITEs; beyond it announcements are refused and counted rather than growing forever.
MAX_ENDPOINTS = 262_144

RTP = 0
RTCP = 1
OTHER = 2  # a non-audio m= line (video, image/T.38): its packets are not this call's audio

Owner = tuple[str, int, int]
"""(call key, side that receives there, RTP, RTCP or OTHER)."""


# Changed endpoints remembered for a router between two looks; past it, all are stale.
MAX_CHANGED = 4096


class MediaTable:
    """Maps an announced (address, port) to the call and side that receive there."""

    def __init__(self, bound: int = MAX_ENDPOINTS) -> None:
        self._map: dict[Endpoint, Owner] = {}
        self._by_call: dict[str, list[Endpoint]] = {}
        self.bound = bound
        self.refused = 0
        """Announcements refused because the table was full."""
        self.shared: dict[Endpoint, dict[str, Owner]] = {}
        """Earlier, still live owners of an endpoint a newer call also announced (media
        servers and SIPp's UAS give every call one address)."""
        self.changed: set[Endpoint | None] | None = None
        """Endpoints whose owners changed since a router last looked (it empties the set;
        past MAX_CHANGED it holds only None: everything changed). None until a router
        looks: live capture routes through the table itself and keeps no such set."""

    def __len__(self) -> int:
        return len(self._map)

    def get(self, endpoint: Endpoint) -> Owner | None:
        return self._map.get(endpoint)

    @property
    def lookup(self) -> Callable[[Endpoint], Owner | None]:
        """``get`` without a call of its own (the dictionary's), for the packet loop."""
        return self._map.get

    def set_side(
        self, key: str, side: int, audio: list[Endpoint], other: list[Endpoint]
    ) -> None:
        """Record where ``side`` of call ``key`` receives: audio RTP endpoints (RTCP on the
        next port) and non-audio ones. New audio replaces the side's old endpoints; an
        SDP without audio (a T.38 offer that may yet be refused) only adds."""
        mine = self._by_call.setdefault(key, [])
        self._changed(mine)
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
        self._changed(ep for ep, _k in entries)
        for ep, kind in entries:
            prior = self._map.get(ep)
            if kind == OTHER and prior is not None and prior[0] == key and prior[2] != OTHER:
                continue  # T.38 offered on the audio port: audio keeps it until replaced
            if prior is None and len(self._map) >= self.bound:
                self.refused += 1
                continue
            # The newest announcement wins lookups; the earlier owner stays reachable through
            # ``shared`` until its call ends, so concurrent calls are not mixed.
            if prior is not None and prior[0] != key:
                # by call key, oldest first: a media server's one address shared by
                # MAX_SHARED calls costs no scan of them as each call comes and goes
                older = self.shared.setdefault(ep, {})
                older.pop(key, None)
                older.pop(prior[0], None)
                older[prior[0]] = prior
                if len(older) > MAX_SHARED:
                    del older[next(iter(older))]
            self._map[ep] = (key, side, kind)
            if prior is None or prior[0] != key:
                mine.append(ep)

    def entries(self, key: str) -> list[tuple[Endpoint, int, int]]:
        """Call ``key``'s endpoints: (endpoint, side, kind) for each it owns or shares."""
        out = []
        for ep in self._by_call.get(key, ()):
            owner = self.owner_for(ep, key)
            if owner is not None:
                out.append((ep, owner[1], owner[2]))
        return out

    def set_remote(self, key: str, entries: list[tuple[Endpoint, int, int]]) -> None:
        """Call ``key``'s endpoints as another process announced them (its whole set:
        what it no longer names is forgotten)."""
        self.drop_call(key)
        for side in (0, 1):
            audio = [ep for ep, s, k in entries if s == side and k == RTP]
            other = [ep for ep, s, k in entries if s == side and k == OTHER]
            if audio or other:
                self.set_side(key, side, audio, other)

    def owner_for(self, ep: Endpoint, key: str) -> Owner | None:
        """The entry call ``key`` has for ``ep``, newest or shared."""
        owner = self._map.get(ep)
        if owner is not None and owner[0] == key:
            return owner
        older = self.shared.get(ep)
        return older.get(key) if older else None

    def _changed(self, eps: Iterable[Endpoint]) -> None:
        if self.changed is None or None in self.changed:
            return
        self.changed.update(eps)
        if len(self.changed) > MAX_CHANGED:
            self.changed = {None}

    def drop_call(self, key: str) -> None:
        """Forget every endpoint of call ``key``; an earlier call sharing one takes it back."""
        self._changed(self._by_call.get(key, ()))
        for ep in self._by_call.pop(key, ()):
            older = self.shared.get(ep)
            if older is not None:
                older.pop(key, None)
            owner = self._map.get(ep)
            if owner is not None and owner[0] == key:
                if older:  # the newest of the others
                    self._map[ep] = older.pop(next(reversed(older)))
                else:
                    del self._map[ep]
            if older is not None and not older:
                del self.shared[ep]
