"""The Content-Security-Policy of the plugin's pages.

Scripts come only from this site: no 'unsafe-inline', no 'unsafe-eval'
(htmx is configured with allowEval false). Datasette's own base template has
two inline scripts; they are allowed by their SHA-256 hashes, computed from
Datasette's templates (trusted source), never from a rendered page.
"""

import base64
import hashlib
import re

from datasette.version import __version__ as datasette_version

INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
TEMPLATES_WITH_INLINE_SCRIPTS = ("base.html", "_close_open_menus.html")


async def inline_script_hashes(datasette) -> list[str]:
    env = datasette.get_jinja_environment(None)
    hashes = []
    for name in TEMPLATES_WITH_INLINE_SCRIPTS:
        source = env.loader.get_source(env, name)[0]
        for body in INLINE_SCRIPT.findall(source):
            if "{%" in body:  # a loop over plugins' scripts: not ours to allow
                continue
            rendered = body
            if "{{" in body:
                rendered = await env.from_string(body).render_async(
                    datasette_version=datasette_version
                )
                if body.endswith("\n") and not rendered.endswith("\n"):
                    rendered += "\n"  # Jinja drops a template's last newline
            hashes.append(_source_hash(rendered))
    return hashes


def _source_hash(script: str) -> str:
    """A script-src source allowing exactly this inline script."""
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"


async def prepare(datasette) -> None:
    """Compute the policy once, at startup."""
    scripts = " ".join(["'self'", *await inline_script_hashes(datasette)])
    datasette._llm_htmx_csp = "; ".join(
        [
            "default-src 'self'",
            f"script-src {scripts}",
            # markdown tables align cells with style attributes
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'self'",
        ]
    )


def policy(datasette, extra_scripts: list[str] = ()) -> str:
    """The policy; ``extra_scripts`` are hashes of inline scripts this
    response may also run."""
    if not extra_scripts:
        return datasette._llm_htmx_csp
    return datasette._llm_htmx_csp.replace(
        "script-src 'self'", "script-src 'self' " + " ".join(extra_scripts), 1
    )


async def body_script_hashes(datasette, request, template: str) -> list[str]:
    """Hashes of the inline scripts other plugins add to a page through
    ``extra_body_script`` (datasette-agent's jump-menu section), asked of
    the plugins themselves, as Datasette asks them when it renders the page.
    Scripts come from installed plugins, never from the page's content: a
    script injected into a reply still matches no hash and does not run."""
    from datasette.plugins import pm
    from datasette.utils import await_me_maybe

    hashes = []
    for script in pm.hook.extra_body_script(
        template=template,
        database=None,
        table=None,
        columns=None,
        view_name=None,
        request=request,
        datasette=datasette,
    ):
        script = await await_me_maybe(script)
        if isinstance(script, dict):
            script = script.get("script")
        if script:
            hashes.append(_source_hash(str(script)))
    return hashes


def nosniff(app):
    """ASGI middleware: every response says ``nosniff``.

    Datasette answers some URLs with text an attacker can choose as
    ``text/plain`` (``/-/query.csv?sql=select 1 as "alert(1)//"``); a
    browser that sniffs would run it as a same-origin ``<script src>``,
    which ``script-src 'self'`` allows. With nosniff, only a script served
    as JavaScript runs."""

    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)

        async def send_nosniff(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                if not any(k.lower() == b"x-content-type-options" for k, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))
                    message = {**message, "headers": headers}
            await send(message)

        return await app(scope, receive, send_nosniff)

    return wrapped
