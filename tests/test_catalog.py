"""The catalog: kept current by import, rebuilt from index.jsonl to the same results,
every filter and sort against the index entries it was built from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from calltap.catalog import (
    COLUMNS,
    CatalogError,
    Query,
    SqliteCatalog,
    call_key,
    rebuild,
    user_part,
)
from calltap.generate import GenOptions, generate
from tests.helpers import load_index, run_import


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("catalog")
    pcap = d / "g.pcap"
    generate(str(pcap), GenOptions(calls=12, duration=3.0, varied=True, loss=0.03, seed=4))
    run_import([pcap], d / "out", jobs=1)
    return d / "out"


def _ids(cat: SqliteCatalog, **kw: object) -> list[str]:
    q = Query(limit=500, **kw)  # type: ignore[arg-type]
    return [c["id"] for c in cat.search(q).calls]


def test_import_keeps_the_catalog_current(out: Path) -> None:
    entries = load_index(out)
    cat = SqliteCatalog.beside(str(out))
    assert cat.count() == len(entries) == 12
    assert {call_key(e) for e in entries} == set(_ids(cat))
    cat.close()


def test_rebuild_gives_the_same_results(out: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "catalog.sqlite").unlink()
    for extra in ("catalog.sqlite-wal", "catalog.sqlite-shm"):
        (copy / extra).unlink(missing_ok=True)
    with (copy / "index.jsonl").open("a") as f:
        f.write('{"call_id": "torn')  # a crash mid-append: skipped
    assert rebuild(str(copy)) == 12
    a, b = SqliteCatalog.beside(str(out)), SqliteCatalog.beside(str(copy))
    e = load_index(out)[3]
    number = user_part(e["callee"])
    for kw in ({}, {"party": number[-4:], "party_mode": "suffix"},
               {"party": number[:3], "party_mode": "prefix"}, {"mos_max": 4.3},
               {"cidr": "0.0.0.0/0"}, {"sort": "duration", "descending": False},
               {"sort": "loss"}, {"text": e["call_id"][:10]}):
        assert _ids(a, **kw) == _ids(b, **kw), kw
    # the import prepares each row in its writer from the summary it has in memory; the
    # rebuild from the summary on disk: the same rows, addresses and words
    cols = f"SELECT {COLUMNS} FROM calls ORDER BY key"
    addrs = "SELECT c.key, a.addr FROM addrs a JOIN calls c ON c.id = a.call ORDER BY 1, 2"
    words = "SELECT c.key, w.text FROM words w JOIN calls c ON c.id = w.rowid ORDER BY 1"
    for sql in (cols, addrs, words):
        rows_a, rows_b = (
            [(*r[:-1], json.loads(r[-1])) if sql == cols else r  # the index line's key order
             for r in cat.db.execute(sql).fetchall()] for cat in (a, b))
        assert rows_a == rows_b, sql
    a.close()
    b.close()


def test_filters_agree_with_the_index(out: Path) -> None:
    entries = load_index(out)
    cat = SqliteCatalog.beside(str(out))
    summaries = {call_key(e): json.loads((out / e["summary"]).read_text()) for e in entries}

    def want(pred: object) -> set[str]:
        return {call_key(e) for e in entries if pred(e)}  # type: ignore[operator]

    e = entries[5]
    user = user_part(e["caller"])
    assert set(_ids(cat, party=user, party_mode="exact")) == want(
        lambda x: user in (user_part(x["caller"]), user_part(x["callee"])))
    assert set(_ids(cat, party=user[1:-1])) >= {call_key(e)}
    assert set(_ids(cat, party=user[:4], party_mode="prefix")) == want(
        lambda x: user_part(x["caller"]).lower().startswith(user[:4].lower())
        or user_part(x["callee"]).lower().startswith(user[:4].lower()))
    assert set(_ids(cat, party=user[-3:], party_mode="suffix")) == want(
        lambda x: user_part(x["caller"]).lower().endswith(user[-3:].lower())
        or user_part(x["callee"]).lower().endswith(user[-3:].lower()))
    mos = sorted(min(m for m in x["mos"] if m is not None) for x in entries)
    lo, hi = mos[2], mos[8]
    assert set(_ids(cat, mos_min=lo, mos_max=hi)) == want(
        lambda x: lo <= min(m for m in x["mos"] if m is not None) <= hi)
    src = summaries[call_key(e)]["directions"][0]["src"].rsplit(":", 1)[0]
    assert call_key(e) in _ids(cat, cidr=f"{src}/32")
    assert set(_ids(cat, cidr=f"{src}/32")) == {
        k for k, s in summaries.items()
        if any(d["src"].rsplit(":", 1)[0] == src or d["dst"].rsplit(":", 1)[0] == src
               for d in s["directions"])
        or src in (s["call"]["caller_signalling"].rsplit(":", 1)[0],
                   s["call"]["callee_signalling"].rsplit(":", 1)[0])
        or any(m["address"] == src for side in s["call"]["media"].values() for m in side)}
    assert set(_ids(cat, codec="PCMA")) == want(lambda x: "PCMA/8000" in x["codecs"])
    for k, side in enumerate(("caller", "callee")):  # one party's direction
        assert set(_ids(cat, mos_max=lo, side=side)) == want(
            lambda x, k=k: x["mos"][k] is not None and x["mos"][k] <= lo)
    assert set(_ids(cat, status="completed")) == want(lambda x: x["status"] == "completed")
    durations = [c["duration"] for c in cat.search(Query(sort="duration", descending=False,
                                                         limit=500)).calls]
    assert durations == sorted(durations)
    cat.close()


def test_keyset_pages_cover_every_call_once(out: Path) -> None:
    cat = SqliteCatalog.beside(str(out))
    for sort in ("start", "duration", "mos", "loss"):
        seen: list[str] = []
        cursor = ""
        while True:
            page = cat.search(Query(sort=sort, limit=5, cursor=cursor))
            assert page.total == 12
            seen += [c["id"] for c in page.calls]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert len(seen) == len(set(seen)) == 12, sort
    cat.close()


def test_bad_queries_say_which_parameter(out: Path) -> None:
    cat = SqliteCatalog.beside(str(out))
    for kw, word in (({"sort": "size"}, "sort"), ({"limit": 0}, "limit"),
                     ({"cursor": "not-a-cursor"}, "cursor"), ({"cidr": "10.0.0.0/33"}, "cidr"),
                     ({"party": "x", "party_mode": "regex"}, "party_mode"),
                     ({"text": "ab"}, "q"), ({"side": "both"}, "side")):
        with pytest.raises(CatalogError, match=word):
            cat.search(Query(**kw))  # type: ignore[arg-type]
    cat.close()


def test_a_call_written_again_replaces_its_row(out: Path, tmp_path: Path) -> None:
    cat = SqliteCatalog(str(tmp_path / "c.sqlite"))
    e = load_index(out)[0]
    cat.add(e, None)
    cat.add({**e, "status": "interrupted"}, None)
    assert cat.count() == 1
    assert cat.get(call_key(e))["status"] == "interrupted"  # type: ignore[index]
    cat.close()


def test_a_batch_replaces_calls_already_in_and_the_later_of_a_key_given_twice(
        out: Path, tmp_path: Path) -> None:
    entries = load_index(out)
    summaries = {call_key(e): json.loads((out / e["summary"]).read_text()) for e in entries}
    cat = SqliteCatalog(str(tmp_path / "c.sqlite"))
    cat.add_many([(e, summaries[call_key(e)]) for e in entries[:6]])
    again = {**entries[2], "status": "interrupted"}
    twice = {**entries[7], "status": "first"}
    cat.add_many([(again, summaries[call_key(again)]), (twice, None),
                  ({**twice, "status": "second"}, summaries[call_key(twice)]),
                  (entries[8], summaries[call_key(entries[8])])])
    assert cat.count() == 8
    assert cat.get(call_key(again))["status"] == "interrupted"  # type: ignore[index]
    assert cat.get(call_key(twice))["status"] == "second"  # type: ignore[index]
    rows = cat.db.execute("SELECT id, key FROM calls").fetchall()
    assert len({i for i, _k in rows}) == 8
    # every call's addresses and words are its own, none left of a replaced row
    ids = {i for i, _k in rows}
    assert {c for (c,) in cat.db.execute("SELECT call FROM addrs")} == ids
    assert {r for (r,) in cat.db.execute("SELECT rowid FROM words")} == ids
    by_text = _ids(cat, text=twice["call_id"])
    assert by_text == [call_key(twice)]
    cat.close()


def test_a_catalog_of_another_schema_is_rebuilt_on_open(out: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    cat = SqliteCatalog.beside(str(copy))
    cat.db.execute("PRAGMA user_version = 1")
    cat.db.execute("DELETE FROM calls WHERE id = (SELECT min(id) FROM calls)")
    cat.close()
    again = SqliteCatalog.beside(str(copy))
    assert again.count() == 12  # rebuilt from index.jsonl, the deleted row back
    again.close()
