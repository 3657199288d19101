"""The web surface's own defences, for every response: the Host check, the security headers, the
bearer scheme and an API page without third-party scripts.

- Host: a server on 127.0.0.1 is reachable from any web page the operator opens, through DNS
  rebinding (evil.example resolves to 127.0.0.1 after the page loads), so a request whose Host is
  not one of `allowed_hosts` (loopback names by default, `--allowed-host` to add, `*` for any) gets
  400 before it reaches a route.
- Headers: a Content-Security-Policy that lets pages load only this origin's scripts and styles
  (images also from data: and blob: URLs, for the results), never be framed (X-Frame-Options
  too, for older browsers), no MIME sniffing, no Referer.
- /docs: FastAPI's pages load Swagger UI and ReDoc from a CDN, on the origin where the page keeps
  the token; here /docs is plain HTML written from the OpenAPI schema, no script at all.
"""

from __future__ import annotations

import hmac
import html
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def host_name(value: str) -> str:
    """The name of a Host header, without its port: 'localhost:8000' -> 'localhost', '[::1]:80' -> '::1'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":")[0]
    return value.rstrip(".")


class Guard:
    """ASGI middleware: refuse foreign Host headers, add the security headers to every answer."""

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...]) -> None:
        self.app = app
        self.any_host = "*" in allowed_hosts
        self.allowed = {host_name(h) for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [(k, v) for k, v in HEADERS if k not in have]
            await send(message)

        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        name = host_name(host)
        if not self.any_host and name not in self.allowed:
            said = f"host {name[:100]!r} is not served here" if name else "no Host header"
            await _json(send_secured, 400, f"{said}; the operator can add it with --allowed-host")
            return
        await self.app(scope, receive, send_secured)


async def _json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def bearer_matches(header: str, token: str) -> bool:
    """`Authorization: Bearer TOKEN`, the scheme in any case (RFC 9110: schemes are case-insensitive)."""
    scheme, _, given = header.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def docs_page(spec: dict[str, Any]) -> str:
    """The API as one HTML page without scripts: each route's method, path, summary, parameters, body and answers."""
    e = html.escape
    info = spec.get("info", {})
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(info.get('title', 'API'))} API</title><link rel='stylesheet' href='/static/style.css'></head><body><main>",
        f"<h1>{e(info.get('title', 'API'))} {e(info.get('version', ''))}</h1><p>{e(info.get('description', ''))}</p>",
        "<p>The machine-readable schema: <a href='/openapi.json'>/openapi.json</a>.</p>",
    ]
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            out.append(f"<section><h2><code>{e(method.upper())} {e(path)}</code></h2><p>{e(op.get('summary', ''))}</p>")
            if op.get("description"):
                out.append(f"<p>{e(op['description'])}</p>")
            params = [f"<li><code>{e(p['name'])}</code> ({e(p.get('in', ''))})</li>" for p in op.get("parameters", [])]
            if params:
                out.append("<p>Parameters:</p><ul>" + "".join(params) + "</ul>")
            body = op.get("requestBody", {}).get("content", {})
            if body:
                out.append("<p>Body: " + ", ".join(f"<code>{e(t)}</code>" for t in body) + "</p>")
            answers = [f"<li>{e(str(code))}: {e(r.get('description', ''))}</li>" for code, r in op.get("responses", {}).items()]
            out.append("<ul>" + "".join(answers) + "</ul></section>")
    out.append("</main></body></html>")
    return "\n".join(out)
