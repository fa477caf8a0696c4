from __future__ import annotations

from pathlib import Path

import pytest

from calltap.config import ConfigError, load_config


def test_precedence(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "c.toml"
    f.write_text('out = "from-file"\ninactivity-timeout = 10\nlinger = 1.5\n')
    monkeypatch.setenv("CALLTAP_LINGER", "3")
    cfg = load_config(str(f), {"out": "from-flag", "inactivity_timeout": None})
    assert (cfg.out, cfg.inactivity_timeout, cfg.linger) == ("from-flag", 10.0, 3.0)


@pytest.mark.parametrize("text", ['nope = 1\n', 'linger = "x"\n', "linger = -1\n", "[[broken"])
def test_bad_config(tmp_path: Path, text: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError):
        load_config(str(f), {})


def test_the_example_deployment_config_loads() -> None:
    from calltap.config import load_config
    from tests.helpers import ROOT

    cfg = load_config(str(ROOT / "calltap" / "deploy" / "calltap.toml"), {})
    assert (cfg.audio_format, cfg.jitter_buffer, cfg.policy) == ("flac", "adaptive",
                                                                 "/etc/calltap/policy.toml")


def test_the_units_run_unprivileged_and_sandboxed() -> None:
    """Each systemd unit runs as its own user, with capabilities only for capture, and
    `systemd-analyze security` (offline) rates it 2.0 or better (9.5 unhardened)."""
    import shutil
    import subprocess

    from tests.helpers import ROOT

    deploy = ROOT / "calltap" / "deploy"
    for name, caps in (("calltap.service", True), ("calltap-capture.service", True),
                       ("calltap-writer@.service", False)):
        text = (deploy / name).read_text()
        assert "User=calltap" in text and "NoNewPrivileges=yes" in text
        assert "ProtectSystem=strict" in text and "ReadWritePaths=/var/lib/calltap" in text
        assert ("CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN" in text) == caps
        assert ("CapabilityBoundingSet=\n" in text) == (not caps)
        if shutil.which("systemd-analyze") is None:
            continue
        r = subprocess.run(["systemd-analyze", "security", "--offline=true",
                            str(deploy / name)], capture_output=True, text=True, check=False)
        level = float(r.stdout.strip().splitlines()[-1].split("level for")[1].split(":")[1]
                      .split()[0])
        assert level <= 2.0, (name, level)
    assert "u calltap" in (deploy / "calltap.sysusers").read_text()
