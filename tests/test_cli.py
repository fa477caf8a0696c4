from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import pytest

from calltap.cli import build_parser, cmd_import, main
from calltap.config import Config
from calltap.generate import GenOptions, generate
from calltap.importer import Importer, ProgressBar
from tests.helpers import load_index, pcap_bytes, sip_invite, udp4


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gen") / "two.pcap"
    generate(str(path), GenOptions(calls=2, duration=2.0, seed=3))
    return path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_import_prints_table_and_drop_line(good: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["import", str(good), "--out", str(tmp_path), "--no-progress"], capsys)
    assert code == 0, err
    assert "start (UTC)" in out and "sip:caller0@example.com" in out and "PCMU/8000" in out
    assert "2 calls written (2 with audio)" in out
    assert out.strip().splitlines()[-1].startswith("malformed or ignored packets:")


@pytest.mark.parametrize(
    "name,data,expect",
    [
        ("empty.pcap", b"", "empty file"),
        ("random.pcap", bytes(range(256)) * 4, "not a pcap or pcapng file"),
        ("image.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "not a pcap or pcapng file"),
        ("short.pcap", pcap_bytes([])[:10], "truncated"),
    ],
)
def test_bad_file_is_one_line_and_others_still_imported(
    name: str, data: bytes, expect: str, good: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / name
    bad.write_bytes(data)
    out_dir = tmp_path / "out"
    code, _out, err = run(["import", str(bad), str(good), "--out", str(out_dir),
                           "--no-progress"], capsys)
    assert code != 0
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and name in errors[0] and expect in errors[0]
    assert len(load_index(out_dir)) == 2


def test_missing_and_directory(good: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(["import", str(tmp_path / "nope.pcap"), str(tmp_path), str(good),
                           "--out", str(tmp_path / "o"), "--no-progress"], capsys)
    assert code != 0
    assert "nope.pcap: cannot open" in err and f"{tmp_path}: cannot open" in err
    assert len(load_index(tmp_path / "o")) == 2


def test_capture_cut_mid_packet_keeps_what_came_before(good: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    data = good.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) * 3 // 4 + 7])
    code, out, err = run(["import", str(cut), "--out", str(tmp_path / "o"), "--no-progress"],
                         capsys)
    assert code == 0
    assert "cut.pcap: capture ends mid-packet" in err
    entries = load_index(tmp_path / "o")
    assert len(entries) == 2 and all(e["audio"] for e in entries)
    assert {e["end_reason"] for e in entries} == {"end-of-input"}


def test_malformed_packets_are_counted_not_fatal(good: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    junk = [
        (1, b"\x00" * 10),  # truncated Ethernet
        (2, udp4("192.0.2.1", 5060, "192.0.2.2", 5060, b"INVITE sip:x SIP/2.0\r\nbroken")),
        (3, udp4("192.0.2.1", 5060, "192.0.2.2", 5060, b"\x80\x00garbage")),
        (4, udp4("192.0.2.1", 5060, "192.0.2.2", 5060, b"x")[:-5]),  # bad IP length
        # a call whose SDP is broken, and one whose media is not RTP
        (5, udp4("192.0.2.1", 5060, "192.0.2.2", 5060,
                 sip_invite("bad-sdp", sdp_ip="192.0.2.1").replace(b"v=0", b"x=0"))),
        (6, udp4("192.0.2.1", 5060, "192.0.2.2", 5060, sip_invite("rtp", port=9000))),
        (7, udp4("192.0.2.2", 9002, "192.0.2.1", 9000, b"\x40" + b"\0" * 40)),
    ]
    bad = tmp_path / "junk.pcap"
    bad.write_bytes(pcap_bytes(junk))
    code, out, _err = run(["import", str(bad), str(good), "--out", str(tmp_path / "o"),
                           "--no-progress"], capsys)
    assert code == 0
    drop_line = out.strip().splitlines()[-1]
    for reason in ("truncated_link_header", "malformed_sip", "udp_not_sip_or_known_media",
                   "bad_ip_length", "bad_sdp", "malformed_rtp (RTP version is not 2)",
                   "unanswered_invite_not_recorded"):
        assert f"{reason}=1" in drop_line
    # the broken-SDP INVITE got no answer and no media: counted, not recorded
    assert len(load_index(tmp_path / "o")) == 3


def test_progress_bar_on_a_terminal(good: Path, tmp_path: Path) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = ProgressBar(stream)
    bar._last = -1e9
    imp = Importer(Config(out=str(tmp_path / "o")))
    imp.current_file, imp.current_bytes, imp.current_size = str(good), 50, 100
    imp.recorder.calls_found, imp.calls_written = 3, 1
    bar(imp)
    imp.finish()
    shown = stream.getvalue()
    assert "two.pcap" in shown and "calls found 3" in shown and "written 1" in shown


def test_console_entry_point(good: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "calltap"
    r = subprocess.run([str(exe), "import", str(good), "--out", str(tmp_path)],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "2 calls written" in r.stdout
    assert r.stderr == ""  # not a terminal: no progress bar


def test_generate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["generate", str(tmp_path / "g.pcap"), "--calls", "1", "--duration",
                        "1"], capsys)
    assert code == 0 and "wrote" in out


def test_table_is_capped_but_index_complete(tmp_path: Path, monkeypatch,  # type: ignore[no-untyped-def]
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import calltap.importer

    monkeypatch.setattr(calltap.importer, "MAX_TABLE_ROWS", 2)
    path = tmp_path / "five.pcap"
    generate(str(path), GenOptions(calls=5, duration=0.5, seed=4))
    code, out, _ = run(["import", str(path), "--out", str(tmp_path / "o"), "--no-progress",
                        "--jobs", "1"], capsys)
    assert code == 0
    assert "... and 3 more calls in" in out and "5 calls written" in out
    assert len(load_index(tmp_path / "o")) == 5


def test_dedup_window_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames = [(k, udp4("192.0.2.1", 5060, "192.0.2.2", 5060, b"\x00junk")) for k in range(3)]
    pcap = tmp_path / "dup.pcap"
    pcap.write_bytes(pcap_bytes(frames))
    _code, out, _ = run(["import", str(pcap), "--out", str(tmp_path / "a"), "--no-progress"],
                        capsys)
    assert "duplicate_packet=2" in out
    _code, out, _ = run(["import", str(pcap), "--out", str(tmp_path / "b"), "--no-progress",
                         "--dedup-window", "0"], capsys)
    assert "duplicate_packet" not in out and "udp_not_sip_or_known_media=3" in out


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_a_command_builds_only_its_own_parser_and_parses_as_the_whole_one() -> None:
    everything = _subcommands(build_parser())
    assert "import" in everything and "hold" in everything
    for name, full in everything.items():
        own = _subcommands(build_parser(name))
        assert list(own) == [name]  # no other subcommand is made
        assert own[name].format_help() == full.format_help()
    # not a subcommand (a typo, an option first): the whole parser, to say so
    assert _subcommands(build_parser("nosuch")).keys() == everything.keys()
    args = build_parser("import").parse_args(["import", "a.pcap", "--jobs", "3"])
    assert args.files == ["a.pcap"] and args.jobs == 3 and args.func is cmd_import
