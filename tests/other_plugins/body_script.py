"""Another Datasette plugin, as datasette-agent is: an inline script on
every page through ``extra_body_script``. The chat's pages let it run (by
its hash) while inline script from anywhere else stays blocked."""

from datasette import hookimpl


@hookimpl
def extra_body_script(template, request):
    return "document.documentElement.dataset.otherPlugin = 'ran';"
