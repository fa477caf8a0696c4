"""Live packets from a network interface through libpcap (pcapy-ng). The one place that
touches an interface; it yields the same (capture ns, link type, frame) the file reader
does, so the live path runs the import core unchanged."""

from __future__ import annotations

import contextlib
import select
import time
from typing import Any

from capture.errors import CaptureError

# Default filter: all UDP (SIP, RTP, RTCP, tunnels like VXLAN or HEP) plus TCP, for SIP
# over TCP on any port, and IP fragments (their later pieces carry no UDP header).
DEFAULT_FILTER = "udp or tcp or (ip[6:2] & 0x1fff != 0) or ip6"
# PACKET_FANOUT_FLAG_DEFRAG (linux/if_packet.h): fragments are reassembled before hashing,
# so all of a datagram reaches one process.
FANOUT_FLAG_DEFRAG = 0x8000
# Packets taken from libpcap per call; a read returns at once when fewer are waiting.
BATCH = 256
# Packets one read hands the capture loop at most: its timers and Redis flushes run between
# reads, a few milliseconds apart even at 100,000 packets per second.
MAX_READ = 2048


class LiveSource:
    """An interface opened promiscuous, in immediate-ish mode (a short read timeout)."""

    def __init__(self, interface: str, bpf: str = DEFAULT_FILTER, snaplen: int = 65535,
                 buffer_mb: int = 64, timeout_ms: int = 50, fanout: int = -1) -> None:
        """``fanout`` >= 0: join that AF_PACKET fanout group, flows spread by a hash of
        their ends (the same both ways), IP fragments put together first."""
        import pcapy  # type: ignore[import-not-found]

        self.interface = interface
        try:
            p = pcapy.create(interface)
            p.set_snaplen(snaplen)
            p.set_promisc(1)
            p.set_timeout(timeout_ms)
            p.set_buffer_size(buffer_mb * 1024 * 1024)
            p.activate()
            p.setfilter(bpf)
            if fanout >= 0:
                p.set_fanout(fanout, pcapy.PACKET_FANOUT_HASH | FANOUT_FLAG_DEFRAG)
            # non-blocking reads after a select(): with TPACKET_V3 a blocking read may not
            # return on its timeout while no packet arrives, and stopping must not wait
            p.setnonblock(1)
        except Exception as exc:  # pcapy raises its own PcapError with libpcap's text
            raise CaptureError(f"{interface}: cannot capture: {exc}") from None
        self._p: Any = p
        self.linktype = int(p.datalink())

    def read(self, wait_s: float = 0.05) -> list[tuple[int, int, bytes]]:
        """The packets waiting now, after waiting up to ``wait_s`` for the first."""
        out: list[tuple[int, int, bytes]] = []
        link = self.linktype
        try:
            select.select([self._p.getfd()], [], [], wait_s)
        except (OSError, ValueError):
            time.sleep(wait_s)
        while len(out) < MAX_READ:
            try:
                # pcapy-ng's next_batch: up to BATCH packets in one call, as one buffer and
                # a table of native uint32 (sec, usec, offset, caplen) per packet
                data, meta = self._p.next_batch(BATCH)
            except Exception:  # noqa: BLE001 - a timeout is reported as an error by pcapy
                break
            if not meta:
                break
            fields = memoryview(meta).cast("I")
            for k in range(0, len(fields), 4):
                sec, usec, off, cap = fields[k], fields[k + 1], fields[k + 2], fields[k + 3]
                out.append((sec * 1_000_000_000 + usec * 1000, link, data[off:off + cap]))
            if len(fields) < 4 * BATCH:
                break
        return out

    def stats(self) -> tuple[int, int, int]:
        """(received, dropped by the kernel, dropped by the interface) from libpcap."""
        try:
            recv, drop, ifdrop = self._p.stats()
        except Exception:  # noqa: BLE001
            return 0, 0, 0
        return int(recv), int(drop), int(ifdrop)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._p.close()
