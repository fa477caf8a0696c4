"""The one configuration dataclass: defaults, then a file, then the environment, then flags."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any


class ConfigError(Exception):
    """A configuration value that cannot be used."""


@dataclass
class Config:
    """Everything calltap can be told. Field names double as CALLTAP_<NAME> variables."""

    out: str = "recordings"
    """Output directory for recordings and index.jsonl."""
    inactivity_timeout: float = 300.0
    """Seconds of capture time without SIP or media after which a call is ended."""
    unsignalled_timeout: float = 30.0
    """Seconds of capture time without packets after which an RTP-only call is ended."""
    linger: float = 2.0
    """Seconds of capture time an ended call still collects media the mirror reordered."""
    audio_format: str = "wav"
    """Audio file format: wav, flac, opus (Ogg Opus) or mp3."""
    layout: str = "stereo"
    """stereo (channel 0 caller, 1 callee), mono (mix) or split (a file per party)."""
    comfort_noise: str = "silence"
    """How comfort noise (RFC 3389) is rendered: silence or noise."""
    join_legs: bool = True
    """A B2BUA's two dialogs of one conversation (RFC 7989 Session-ID, or ``join_header``)
    are written as one recording; false: each leg on its own."""
    join_header: str = ""
    """A header carrying the other leg's Call-ID, as some SBCs send (X-CID style)."""
    join_by_media: bool = False
    """Also join two calls whose G.711 audio matches a few ms apart (an SBC that signals
    no link); a call ending waits up to 10 s of capture time for its partner."""
    relay_hop: str = "nearest-sender"
    """Which copy of a stream seen on two hops (a proxy with a media relay) is recorded:
    nearest-sender (what the talker's phone sent) or nearest-receiver."""
    jitter_buffer: str = "fixed"
    """The listener's jitter buffer the MOS assumes: fixed or adaptive."""
    jitter_buffer_ms: float = 60.0
    """Its depth in ms (fixed), or where an adaptive one starts."""
    jitter_buffer_max_ms: float = 200.0
    """The deepest an adaptive jitter buffer grows, in ms."""
    policy: str = ""
    """Recording policy file (TOML): which calls are recorded, groups, identities, pauses.
    Empty: record every call, parties from From and To."""
    dedup_window: float = 0.1
    """Seconds within which an identical packet is a mirror copy and dropped (0: keep all)."""
    progress: bool = True
    """Show a progress bar when stderr is a terminal."""
    jobs: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    """Writer processes for import; 1 writes each call in the importing process."""
    webhook_url: str = ""
    """Where each recording's index line is POSTed when it is written (empty: nowhere)."""
    webhook_secret: str = ""
    """The HMAC-SHA256 key that signs each webhook body (X-Calltap-Signature)."""
    oidc_issuer: str = ""
    """The dashboard's single sign-on provider (OpenID Connect issuer URL); empty: none."""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_user_claim: str = "email"
    """The ID token claim that names a calltap user (the user must exist)."""
    pci_dtmf: bool = False
    """Silence DTMF tones and RFC 4733 event periods in the audio; the digits' times stay
    in the metadata, the digits become "*" (card numbers and PINs never recorded)."""
    signing_key: str = ""
    """Ed25519 private key (PEM, from `calltap keys init`): every call gets a signed
    manifest and an entry in the append-only log (`calltap verify` checks both)."""
    recorder_name: str = ""
    """This recorder's name in manifests (default: the host name)."""
    catalog_url: str = ""
    """A PostgreSQL database for the catalog (``postgresql://USER:PASS@HOST/DB``), shared
    by writers on several hosts and the dashboard; empty: catalog.sqlite beside the
    recordings."""
    storage_url: str = ""
    """Object storage for recordings and finished spools, ``s3://BUCKET[/PREFIX]`` (empty:
    the local directories only). Credentials come from the environment, as for any AWS
    client (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, or an instance role)."""
    s3_endpoint_url: str = ""
    """An S3-compatible server's URL (MinIO, Ceph...); empty: AWS."""
    s3_region: str = ""
    """The bucket's region (default us-east-1)."""
    tsa_url: str = ""
    """An RFC 3161 time-stamping authority (HTTP URL): every signed checkpoint of the log
    is timestamped by it (``calltap verify --log --tsa-ca`` checks the stamps)."""
    probe_name: str = ""
    """This capture probe's name (letters, digits, '.', '_', '-'; default: the host name).
    Probes sharing a Redis need distinct names: a restarted probe takes up only its own
    calls in progress."""
    shared_media: bool = False
    """Probes share one media map through Redis: a call whose legs or media another probe
    sees (caller side at one site, callee side at another; SIP at one, RTP at another) is
    recorded in parts that become one recording. Every probe of the site sets it. Always on
    between the processes of ``calltap capture --procs N``."""
    encrypt_to: str = ""
    """X25519 public key (PEM, from `calltap keys init`): every call's files are sealed
    with a data key of their own, wrapped for this key; live spools are sealed too.
    Empty: files are written in plain."""
    key_store: str = ""
    """Where the wrapped data keys are kept (default OUT/.calltap/keys); put it apart from
    the recordings' backups so that `calltap erase` reaches every copy."""
    decrypt_key: str = ""
    """X25519 private key for `calltap serve` and `calltap decrypt`: only they hold it."""
    srtp_keys: list[str] = field(default_factory=list)
    """SRTP keys for streams whose SDP did not carry one: [0xSSRC=|ADDR:PORT=]SUITE:BASE64."""

    def validate(self) -> None:
        if self.inactivity_timeout <= 0:
            raise ConfigError("inactivity_timeout must be positive")
        if self.unsignalled_timeout <= 0:
            raise ConfigError("unsignalled_timeout must be positive")
        if self.linger < 0:
            raise ConfigError("linger must not be negative")
        from writer.audio_out import FORMATS, LAYOUTS

        if self.audio_format not in FORMATS:
            raise ConfigError(f"audio_format {self.audio_format!r}: one of {', '.join(FORMATS)}")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"layout {self.layout!r}: one of {', '.join(LAYOUTS)}")
        if self.comfort_noise not in ("silence", "noise"):
            raise ConfigError(f"comfort_noise {self.comfort_noise!r}: silence or noise")
        from writer.hops import RELAY_HOPS

        if self.relay_hop not in RELAY_HOPS:
            raise ConfigError(f"relay_hop {self.relay_hop!r}: {' or '.join(RELAY_HOPS)}")
        from writer.errors import WriterError
        from writer.jitterbuf import JitterBuffer

        try:
            JitterBuffer(self.jitter_buffer, self.jitter_buffer_ms,
                         min(20.0, self.jitter_buffer_ms), self.jitter_buffer_max_ms)
        except WriterError as exc:
            raise ConfigError(str(exc)) from None
        if self.dedup_window < 0:
            raise ConfigError("dedup_window must not be negative")
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            raise ConfigError("webhook_url: an http:// or https:// URL")
        if self.webhook_url and not self.webhook_secret:
            raise ConfigError("webhook_url needs a webhook_secret to sign with")
        if self.oidc_issuer and not (self.oidc_client_id and self.oidc_client_secret):
            raise ConfigError("oidc_issuer needs oidc_client_id and oidc_client_secret")
        if self.signing_key:
            from writer.errors import WriterError as KeyFault
            from writer.manifest import load_key

            try:
                load_key(self.signing_key, True)
            except KeyFault as exc:
                raise ConfigError(f"signing_key: {exc}") from None
        if self.encrypt_to or self.decrypt_key:
            from writer.seal import SealError, load_private, load_public

            try:
                if self.encrypt_to:
                    load_public(self.encrypt_to)
                if self.decrypt_key:
                    load_private(self.decrypt_key)
            except SealError as exc:
                raise ConfigError(f"encryption key: {exc}") from None
        if self.probe_name and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", self.probe_name):
            raise ConfigError(f"probe_name {self.probe_name[:70]!r}: 1 to 64 letters, digits, "
                              "'.', '_' or '-'")
        if self.storage_url and not re.fullmatch(r"s3://[a-z0-9.-]{3,63}(/.*)?",
                                                 self.storage_url):
            raise ConfigError(f"storage_url {self.storage_url[:80]!r}: s3://BUCKET[/PREFIX]")
        if self.jobs < 1:
            raise ConfigError("jobs must be at least 1")
        from writer.srtp import SrtpKeyError, parse_key_spec

        for spec in self.srtp_keys:
            try:
                parse_key_spec(spec)
            except SrtpKeyError as exc:
                raise ConfigError(f"srtp key {exc}") from None


def _coerce(field: dataclasses.Field[Any], raw: Any, where: str) -> Any:
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    try:
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            return str(raw).strip().lower() in ("1", "true", "yes", "on")
        if kind == "float":
            return float(raw)
        if kind == "int":
            return int(raw)
        if kind == "list[str]":
            items = raw if isinstance(raw, list) else str(raw).split(",")
            return [str(x).strip() for x in items if str(x).strip()]
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {field.name} = {raw!r} is not a {kind}") from None


def load_config(path: str | None, overrides: dict[str, Any]) -> Config:
    """Build the configuration: defaults < file (TOML) < CALLTAP_* environment < overrides."""
    cfg = Config()
    fields = {f.name: f for f in dataclasses.fields(Config)}
    if path:
        import tomllib  # only with a file: 8 ms of every command's start

        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        for key, raw in data.items():
            name = key.replace("-", "_")
            if name not in fields:
                raise ConfigError(f"{path}: unknown setting {key!r}")
            setattr(cfg, name, _coerce(fields[name], raw, path))
    for name, fld in fields.items():
        env = os.environ.get("CALLTAP_" + name.upper())
        if env is not None:
            setattr(cfg, name, _coerce(fld, env, "CALLTAP_" + name.upper()))
    for name, raw in overrides.items():
        if raw is not None:
            setattr(cfg, name, _coerce(fields[name], raw, "--" + name.replace("_", "-")))
    cfg.validate()
    return cfg
