"""OAUTHBEARER tokens from an OIDC token endpoint (client-credentials grant).

librdkafka fetches and refreshes these tokens itself (``sasl.oauthbearer.method =
oidc``); kafka-python needs a token-provider object, which :class:`OidcTokenProvider`
is: it posts ``grant_type=client_credentials`` (client id and secret in HTTP basic
auth, as librdkafka does; ``scope`` if set) and reuses the token until shortly
before it expires.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from kafka.sasl.oauth import AbstractTokenProvider

from streammeta.config import KafkaConfig
from streammeta.errors import BrokerError

# Renew a token this long before the endpoint says it expires (clock skew, slow brokers).
REFRESH_MARGIN_S = 60.0
DEFAULT_LIFETIME_S = 300.0  # when the endpoint gives no expires_in


class OidcTokenProvider(AbstractTokenProvider):
    """kafka-python's ``sasl_oauth_token_provider`` for OIDC client credentials."""

    def __init__(self, token_endpoint_url: str, client_id: str, client_secret: str,
                 scope: str = "", timeout_s: float = 10.0) -> None:
        super().__init__()
        self.token_endpoint_url = token_endpoint_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._token = ""
        self._renew_at = 0.0

    @classmethod
    def from_config(cls, cfg: KafkaConfig) -> OidcTokenProvider:
        return cls(cfg.sasl_oauthbearer_token_endpoint_url, cfg.sasl_oauthbearer_client_id,
                   cfg.sasl_oauthbearer_client_secret, cfg.sasl_oauthbearer_scope,
                   cfg.request_timeout_ms / 1000)

    def token(self) -> str:
        """A valid access token, fetched again only when the current one is about to expire."""
        with self._lock:
            if not self._token or time.monotonic() >= self._renew_at:
                self._token, lifetime_s = self._fetch()
                self._renew_at = time.monotonic() + max(1.0, lifetime_s - REFRESH_MARGIN_S)
            return self._token

    def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        basic = base64.b64encode(f"{urllib.parse.quote(self.client_id)}:"
                                 f"{urllib.parse.quote(self.client_secret)}".encode()).decode()
        request = urllib.request.Request(
            self.token_endpoint_url, data=urllib.parse.urlencode(form).encode(),
            headers={"Authorization": f"Basic {basic}",
                     "Content-Type": "application/x-www-form-urlencoded",
                     "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise BrokerError(f"OAUTHBEARER token from {self.token_endpoint_url}: {exc}") from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise BrokerError(f"OAUTHBEARER token endpoint {self.token_endpoint_url} answered "
                              "without an access_token")
        expires_in = body.get("expires_in")
        return token, float(expires_in) if isinstance(expires_in, int | float) \
            else DEFAULT_LIFETIME_S
