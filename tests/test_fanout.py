"""The command line each capture process of ``capture --procs N`` gets."""

from __future__ import annotations

from calltap.fanout import METRICS_STEP, child_argv


def test_each_process_gets_its_group_name_spool_and_port() -> None:
    argv = ["capture", "--interface", "eth1", "--procs", "2", "--redis", "unix:///r",
            "--spool", "/var/spool/ct", "--probe=edge", "--metrics-port", "9100",
            "--filter", "udp"]
    got = child_argv(argv, 1, 4242, "edge", "/var/spool/ct", 9100)
    assert got == ["capture", "--interface", "eth1", "--redis", "unix:///r", "--filter",
                   "udp", "--fanout-group", "4242", "--probe", "edge.1", "--spool",
                   "/var/spool/ct/1", "--metrics-port", str(9100 + METRICS_STEP)]
    assert "--metrics-port" not in child_argv(["capture", "--procs=2"], 0, 1, "p", "/s", 0)
