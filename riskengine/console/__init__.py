"""The web console at ``/console`` of `riskengine serve`: server-rendered pages (Jinja2,
autoescaped) over the service's own runtime, with htmx and uPlot vendored in ``static/``.

Sign-in takes the admin token and an optional analyst name (the name the review pages,
review_pages.py, act as) and keeps a signed session cookie (session.py); every page needs
it and every form POST carries the session's CSRF token. The pages only call APIs
that the in-memory and the Redis-state runtimes both have.
"""

from riskengine.console.routes import add_console

__all__ = ["add_console"]
