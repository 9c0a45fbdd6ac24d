"""Everything that reads or writes SQL lives in this package, and nothing
outside it does:

- ``database``: finding logs.db, attaching it, writes that retry.
- ``schema``: the plugin's own tables, by numbered migrations.
- ``records``: what a conversation and a message are, in Python.
- ``llm_logs``: llm's own tables (both schemas), and llm's internals.
- ``unlogged``: messages in flight, or that ended without a logged response.
- ``listing``: the list of conversations, search and pagination, and the
  jump menu's.
- ``data_schema``: the CREATE statements of the site's other databases.
- ``rendered``: rendered replies kept in a file beside logs.db.

(The rules Datasette runs to decide permissions are SQL too; they are in
permissions.py, with the other permission rules.)
"""
