"""The client's address and scheme behind trusted reverse proxies (FAQLOOP_TRUSTED_PROXIES).

`X-Forwarded-For`, `X-Forwarded-Proto` and RFC 7239 `Forwarded` are believed only when the
connection comes from a listed proxy; from anyone else they are ignored, so a client cannot
pick the address its votes and searches are counted against. Behind a chain of proxies the
client is the right-most address that is not itself a trusted proxy.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from api.web.limits import ASGIApp, Receive, Scope, Send

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SCHEMES = frozenset({"http", "https"})
_FORWARDED_PAIR = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*')


def parse_proxies(spec: str | Iterable[str]) -> list[IPNetwork]:
    """Networks from addresses and CIDRs (comma- or space-separated); ValueError if bad."""
    items = re.split(r"[,\s]+", spec) if isinstance(spec, str) else list(spec)
    networks: list[IPNetwork] = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from exc
    return networks


def _address(text: str) -> IPAddress | None:
    """An address from a header node: bare, [v6]:port, v4:port; None for unknown/obfuscated."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _forwarded_elements(value: str) -> list[dict[str, str]]:
    """The elements of a `Forwarded` header, each a dict of lower-cased parameters."""
    elements: list[dict[str, str]] = []
    for part in value.split(","):
        params: dict[str, str] = {}
        for pair in part.split(";"):
            match = _FORWARDED_PAIR.fullmatch(pair)
            if match:
                raw = match.group(2)
                if raw.startswith('"'):
                    raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
                params[match.group(1).lower()] = raw
        elements.append(params)
    return elements


class TrustedProxies:
    """Which peers may speak for the client, and what they say."""

    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        self.networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, host: str | None) -> bool:
        """True when `host` (a peer address) is inside a trusted network."""
        if not host or not self.networks:
            return False
        address = _address(host)
        if address is None:
            return False
        return any(address in network for network in self.networks)

    def resolve(
        self, peer: str | None, headers: Iterable[tuple[bytes, bytes]]
    ) -> tuple[str | None, str | None]:
        """(client address, scheme) the proxies report; (None, None) when not to be believed.

        `Forwarded` wins over the `X-Forwarded-*` pair when both are present. Hops are read
        right to left; the first one not in a trusted network is the client. A hop that is
        not an address (`unknown`, an obfuscated name) stops the walk there.
        """
        if not self.trusts(peer):
            return None, None
        forwarded: list[str] = []
        xff: list[str] = []
        proto: str | None = None
        for name, raw in headers:
            if name == b"forwarded":
                forwarded.append(raw.decode("latin-1"))
            elif name == b"x-forwarded-for":
                xff.append(raw.decode("latin-1"))
            elif name == b"x-forwarded-proto":
                proto = raw.decode("latin-1")
        hops: list[tuple[str, str | None]] = []  # (for, proto) per hop, left to right
        if forwarded:
            for element in _forwarded_elements(",".join(forwarded)):
                hops.append((element.get("for", ""), element.get("proto")))
        elif xff:
            protos = [p.strip().lower() for p in (proto or "").split(",") if p.strip()]
            nodes = [n.strip() for n in ",".join(xff).split(",") if n.strip()]
            # X-Forwarded-Proto lists one scheme per hop too, or a single one for the last.
            offset = len(nodes) - len(protos)
            for i, node in enumerate(nodes):
                hops.append((node, protos[i - offset] if i >= offset >= 0 else None))
        if not hops:
            last = (proto or "").split(",")[-1].strip().lower()
            return None, last if last in _SCHEMES else None
        client: str | None = None
        scheme: str | None = None
        for node, hop_proto in reversed(hops):
            address = _address(node)
            if address is None:
                break
            client = str(address)
            if hop_proto and hop_proto.lower() in _SCHEMES:
                scheme = hop_proto.lower()
            if not any(address in network for network in self.networks):
                break
        return client, scheme


class TrustedProxyMiddleware:
    """Rewrite the ASGI scope's `client` and `scheme` from trusted proxies' headers only."""

    def __init__(self, app: ASGIApp, *, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.proxies:
            peer = scope.get("client")
            client, scheme = self.proxies.resolve(
                peer[0] if peer else None, scope.get("headers") or ()
            )
            if client is not None or scheme is not None:
                scope = dict(scope)
                if client is not None:
                    scope["client"] = (client, 0)
                if scheme is not None:
                    scope["scheme"] = (
                        scheme
                        if scope["type"] == "http"
                        else ("wss" if scheme == "https" else "ws")
                    )
        await self.app(scope, receive, send)
