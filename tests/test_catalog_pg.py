"""The PostgreSQL catalog against the SQLite one as the oracle: the same calls give the
same results for every filter, sort, page and scope; replacing and removing a call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from calltap.catalog import (
    CatalogError,
    PgCatalog,
    Query,
    Scope,
    SqliteCatalog,
    call_key,
    read_summary,
    user_part,
)
from calltap.generate import GenOptions, generate
from tests.helpers import ROOT, load_index, run_import
from writer.timefmt import parse_time


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory,
         postgres_url: str) -> tuple[SqliteCatalog, PgCatalog, Path]:
    d = tmp_path_factory.mktemp("pgcatalog")
    pcap = d / "g.pcap"
    generate(str(pcap), GenOptions(calls=30, duration=3.0, varied=True, loss=0.03, seed=9))
    run_import([pcap, ROOT / "pcaps" / "sample-calls.pcap"], d / "out", jobs=1)
    pg = PgCatalog(postgres_url)
    pg.clear()
    assert pg.refill(str(d / "out")) == len(load_index(d / "out")) == 34
    return SqliteCatalog.beside(str(d / "out")), pg, d / "out"


def _all(cat: SqliteCatalog, q: Query) -> tuple[int, list[str]]:
    """Every page of a search: (total, ids in order)."""
    ids: list[str] = []
    total = -1
    while True:
        page = cat.search(q)
        total = page.total
        ids += [c["id"] for c in page.calls]
        if page.next_cursor is None:
            return total, ids
        q = Query(**{**q.__dict__, "cursor": page.next_cursor})


def test_every_query_gives_what_sqlite_gives(both: tuple[SqliteCatalog, PgCatalog, Path]
                                             ) -> None:
    lite, pg, out = both
    entries = load_index(out)
    e = entries[7]
    user = user_part(e["caller"])
    src = read_summary(str(out), e)["directions"][0]["src"].rsplit(":", 1)[0]  # type: ignore[index]
    queries: list[dict[str, Any]] = [
        {}, {"party": user, "party_mode": "exact"}, {"party": user.upper(), "party_mode":
                                                     "exact"},
        {"party": user[1:-1]}, {"party": user[:2]}, {"party": user[:4], "party_mode": "prefix"},
        {"party": user[-3:], "party_mode": "suffix"}, {"text": e["call_id"][:8]},
        {"text": "100%"}, {"cidr": f"{src}/32"}, {"cidr": "0.0.0.0/0"}, {"codec": "PCMA"},
        {"status": "completed"}, {"dtmf": "1"}, {"mos_min": 3.0, "mos_max": 4.2},
        {"mos_max": 4.0, "side": "caller"}, {"loss_min": 0.5}, {"duration_min": 2.0},
        {"start_from": parse_time(e["start"])}, {"start_to": parse_time(e["start"])},
        {"sort": "duration", "descending": False}, {"sort": "mos"}, {"sort": "loss"},
        {"scope": Scope(prefixes=(user[:3],))}, {"scope": Scope(cidrs=(f"{src}/24",))},
    ]
    for kw in queries:
        for limit in (500, 7):  # one page, and keyset pages
            q = Query(limit=limit, **kw)
            assert _all(pg, q) == _all(lite, q), kw
    for e in entries[:5]:
        assert pg.get(call_key(e)) == lite.get(call_key(e))
        assert pg.get(call_key(e), Scope(prefixes=("nobody",))) is None
    assert list(pg.stats_rows(None, None)) == list(lite.stats_rows(None, None))
    assert [x["id"] for x in pg.export(Query())] == [x["id"] for x in lite.export(Query())]
    with pytest.raises(CatalogError, match="cursor"):
        pg.search(Query(cursor="not-a-cursor"))


def test_a_call_written_again_replaces_its_row_and_removal_forgets_it(
        both: tuple[SqliteCatalog, PgCatalog, Path]) -> None:
    _lite, pg, out = both
    e = load_index(out)[0]
    n = pg.count()
    pg.add({**e, "status": "changed"}, read_summary(str(out), e))
    assert pg.count() == n and pg.get(call_key(e))["status"] == "changed"  # type: ignore[index]
    pg.remove(call_key(e))
    assert pg.count() == n - 1 and pg.get(call_key(e)) is None
    assert call_key(e) not in _all(pg, Query(cidr="0.0.0.0/0"))[1]  # its addresses went too
    pg.add(e, read_summary(str(out), e))
    assert pg.count() == n
