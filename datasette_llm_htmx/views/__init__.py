"""The route handlers: ``pages`` (what GET draws), ``actions`` (what POST
changes), ``stream`` (the event stream of a reply). Each reads as check,
call, draw; ``common`` holds what they share."""
