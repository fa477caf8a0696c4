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
