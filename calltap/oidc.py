"""Single sign-on through an OpenID Connect provider: the authorization code flow with PKCE
(RFC 7636) and a nonce, the ID token's signature checked against the provider's published
keys, its issuer, audience, expiry and nonce checked too. The provider says who someone is;
the access file says what they may do: a name the file does not know gets no session."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

# The provider's answers are awaited this long at most.
HTTP_TIMEOUT_S = 10.0
# A sign-in must come back from the provider within this.
FLOW_TTL_S = 600
# The provider's discovery document and keys are fetched again after this.
DISCOVERY_TTL_S = 3600
# Signature algorithms accepted for ID tokens (never "none", never HMAC with a public key).
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]


class OidcError(Exception):
    """A sign-in the provider or its token did not complete (the message says which)."""


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


@dataclass(frozen=True)
class Flow:
    """What a sign-in in progress must find again when the provider sends the user back."""

    state: str
    nonce: str
    verifier: str
    next_path: str
    expires: float

    def to_text(self) -> str:
        return _b64(json.dumps([self.state, self.nonce, self.verifier, self.next_path,
                                self.expires]).encode())

    @classmethod
    def from_text(cls, text: str) -> Flow:
        try:
            s, n, v, p, e = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            return cls(str(s), str(n), str(v), str(p), float(e))
        except (ValueError, TypeError) as exc:
            raise OidcError(f"sign-in state unreadable: {exc}") from None


class Oidc:
    def __init__(self, issuer: str, client_id: str, client_secret: str,
                 claim: str = "email") -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.claim = claim
        self._meta: dict[str, Any] = {}
        self._meta_at = 0.0
        self._jwks: Any = None

    def _get(self, url: str) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as r:  # noqa: S310
                data: dict[str, Any] = json.load(r)
                return data
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise OidcError(f"{url}: {exc}") from None

    def meta(self) -> dict[str, Any]:
        """The provider's discovery document (OpenID Connect Discovery 1.0, section 4)."""
        if not self._meta or time.monotonic() - self._meta_at > DISCOVERY_TTL_S:
            meta = self._get(self.issuer + "/.well-known/openid-configuration")
            if meta.get("issuer", "").rstrip("/") != self.issuer:
                raise OidcError(f"the provider names itself {meta.get('issuer')!r}, not "
                                f"{self.issuer!r}")
            for k in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(meta.get(k), str):
                    raise OidcError(f"the provider's discovery document has no {k}")
            self._meta, self._meta_at = meta, time.monotonic()
            import jwt

            self._jwks = jwt.PyJWKClient(meta["jwks_uri"], cache_keys=True,
                                         lifespan=DISCOVERY_TTL_S, timeout=int(HTTP_TIMEOUT_S))
        return self._meta

    def begin(self, redirect_uri: str, next_path: str, now: float) -> tuple[str, Flow]:
        """Where to send the browser, and what to keep until it comes back."""
        flow = Flow(secrets.token_urlsafe(24), secrets.token_urlsafe(24),
                    secrets.token_urlsafe(48), next_path, now + FLOW_TTL_S)
        challenge = _b64(hashlib.sha256(flow.verifier.encode()).digest())
        query = urllib.parse.urlencode({
            "response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
            "scope": "openid email profile", "state": flow.state, "nonce": flow.nonce,
            "code_challenge": challenge, "code_challenge_method": "S256"})
        return f"{self.meta()['authorization_endpoint']}?{query}", flow

    def finish(self, redirect_uri: str, code: str, state: str, flow: Flow, now: float) -> str:
        """The code exchanged and the ID token checked: the user's name (``claim``)."""
        if flow.expires < now:
            raise OidcError("the sign-in took too long; start again")
        if not secrets.compare_digest(state, flow.state):
            raise OidcError("the provider's answer is not for this sign-in (state differs)")
        tokens = self.exchange(redirect_uri, code, flow.verifier)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("the provider sent no ID token")
        return self.user_of(id_token, flow.nonce)

    def exchange(self, redirect_uri: str, code: str, verifier: str) -> dict[str, Any]:
        """The provider's tokens for an authorization code (RFC 6749 section 4.1.3)."""
        body = urllib.parse.urlencode({
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": verifier, "client_id": self.client_id}).encode()
        basic = base64.b64encode(
            f"{urllib.parse.quote(self.client_id)}:{urllib.parse.quote(self.client_secret)}"
            .encode()).decode()
        req = urllib.request.Request(self.meta()["token_endpoint"], data=body, method="POST",
                                     headers={"Content-Type":
                                              "application/x-www-form-urlencoded",
                                              "Authorization": f"Basic {basic}",
                                              "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as r:  # noqa: S310
                tokens: dict[str, Any] = json.load(r)
                return tokens
        except urllib.error.HTTPError as exc:
            raise OidcError(f"the provider refused the code: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise OidcError(f"token endpoint: {exc}") from None

    def user_of(self, id_token: str, nonce: str) -> str:
        """The user an ID token names, once its signature, issuer, audience (this client),
        expiry and nonce hold (OpenID Connect Core 1.0, section 3.1.3.7)."""
        import jwt

        try:
            kid = jwt.get_unverified_header(id_token).get("kid")
            # a token without a key id: each published signing key is tried
            keys = [self._jwks.get_signing_key(kid)] if kid else \
                self._jwks.get_signing_keys()
        except jwt.PyJWTError as exc:
            raise OidcError(f"ID token not accepted: {exc}") from None
        claims: dict[str, Any] = {}
        for k in keys:
            try:
                claims = jwt.decode(id_token, k.key, algorithms=ALGORITHMS,
                                    audience=self.client_id, issuer=self._meta["issuer"],
                                    options={"require": ["exp", "iat", "iss", "aud", "sub"]},
                                    leeway=30)
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise OidcError(f"ID token not accepted: {exc}") from None
        if not claims:
            raise OidcError("ID token not accepted: no published key signed it")
        if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
            raise OidcError("ID token not accepted: its nonce is not this sign-in's")
        name = claims.get(self.claim)
        if not isinstance(name, str) or not name:
            raise OidcError(f"the ID token has no {self.claim!r} claim")
        return name
