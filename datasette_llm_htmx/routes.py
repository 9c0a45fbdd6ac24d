"""Every route of the plugin, with the methods it answers: one table.

A request with another method gets a 405 that says which to use, before
any handler runs."""

from datasette import Response

from .views import actions, pages, steering, stream

CID = r"(?P<cid>[^/.]+)"
MID = r"(?P<mid>[^/]+)"

ROUTES = [
    (r"^/-/llm$", {"GET": pages.index}),
    (r"^/-/llm/start$", {"POST": actions.start}),
    (r"^/-/llm/options$", {"GET": pages.model_options}),
    (r"^/-/llm/about$", {"GET": pages.about}),
    (rf"^/-/llm/{CID}$", {"GET": pages.conversation_page}),
    (rf"^/-/llm/{CID}\.(?P<format>md|json)$", {"GET": pages.export}),
    (rf"^/-/llm/{CID}/prompt$", {"POST": actions.follow_up}),
    (rf"^/-/llm/{CID}/stream/{MID}$", {"GET": stream.stream}),
    (rf"^/-/llm/{CID}/stop/{MID}$", {"POST": actions.stop}),
    (rf"^/-/llm/{CID}/retry/{MID}$", {"POST": actions.retry}),
    (rf"^/-/llm/{CID}/title$", {"GET": pages.title, "POST": actions.rename}),
    (rf"^/-/llm/{CID}/prompt/{MID}$", {"GET": pages.whole_prompt}),
    (rf"^/-/llm/{CID}/attachment/(?P<aid>[^/]+)$", {"GET": pages.attachment}),
    (rf"^/-/llm/{CID}/regenerate/{MID}$", {"POST": steering.regenerate}),
    (rf"^/-/llm/{CID}/edit/{MID}$", {"GET": steering.edit, "POST": steering.edit}),
    (rf"^/-/llm/{CID}/carry/{MID}$", {"POST": steering.carry}),
    (rf"^/-/llm/{CID}/delete$", {"GET": steering.delete, "POST": steering.delete}),
]


def by_method(handlers: dict):
    """One Datasette view for a route: the handler for the request's method,
    called with the arguments it names."""
    allowed = ", ".join(handlers)

    async def view(request, datasette, send, receive):
        handler = handlers.get(request.method)
        if handler is None:
            return Response.text(
                f"Method not allowed: use {' or '.join(handlers)}.",
                status=405,
                headers={"Allow": allowed},
            )
        available = {"request": request, "datasette": datasette, "send": send, "receive": receive}
        return await handler(**{name: available[name] for name in _parameters(handler)})

    return view


def _parameters(handler) -> tuple[str, ...]:
    code = handler.__code__
    return code.co_varnames[: code.co_argcount]


def routes():
    return [(pattern, by_method(handlers)) for pattern, handlers in ROUTES]

