"""Listening quality per direction: the ITU-T G.107 E-model R-factor and MOS-CQ.

R = Ro - Is - Id - Ie,eff + A with the G.107 default values (Ro - Is = 93.2, A = 0).
Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl) (G.107 section 7.6), with the codec's
equipment impairment Ie and packet-loss robustness Bpl from ITU-T G.113 Appendix I. Ppl is
the loss the listener hears: network loss plus packets a jitter buffer would have dropped.
"""

from __future__ import annotations

import math

R0_MINUS_IS = 93.2

# Codec -> (Ie, Bpl), G.113 Appendix I (G.711 with its Appendix I packet loss concealment).
# Wideband and newer codecs are mapped onto the narrowband scale, the usual practice of
# passive monitors until G.107.1 is applied.
IMPAIRMENTS: dict[str, tuple[float, float]] = {
    "PCMU": (0.0, 25.1),
    "PCMA": (0.0, 25.1),
    "G722": (0.0, 25.1),
    "G729": (11.0, 19.0),
    "G723": (15.0, 16.1),
    "GSM": (20.0, 10.0),
    "ILBC": (10.0, 32.0),
    "AMR": (5.0, 10.0),
    "AMR-WB": (5.0, 10.0),
    "OPUS": (0.0, 25.1),
    "SPEEX": (11.0, 19.0),
    "G726-32": (7.0, 10.0),
    "G726-24": (25.0, 10.0),
    "G726-16": (50.0, 10.0),
    "G726-40": (2.0, 10.0),
    "L16": (0.0, 25.1),
    "DVI4": (7.0, 10.0),
}
DEFAULT_IMPAIRMENT = (0.0, 25.1)


def delay_impairment(one_way_ms: float) -> float:
    """Id from the absolute one-way delay Ta (G.107 section 7.4, echo-free terms only)."""
    if one_way_ms <= 100:
        return 0.0
    x = math.log(one_way_ms / 100) / math.log(2)
    idd: float = 25 * ((1 + x**6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2)
    return idd


def r_factor(codec: str, loss_pct: float, one_way_ms: float = 0.0, burst_ratio: float = 1.0
             ) -> float:
    """The transmission rating R for a codec (name as in summaries, e.g. PCMU/8000)."""
    name = codec.split("/", 1)[0].upper()
    ie, bpl = IMPAIRMENTS.get(name.removeprefix("AAL2-"), DEFAULT_IMPAIRMENT)
    ppl = max(0.0, min(100.0, loss_pct))
    ie_eff = ie + (95 - ie) * ppl / (ppl / max(burst_ratio, 1.0) + bpl)
    return R0_MINUS_IS - delay_impairment(one_way_ms) - ie_eff


def mos(r: float) -> float:
    """MOS-CQ from R (G.107 Annex B)."""
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6
