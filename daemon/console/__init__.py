"""The web console: pages of repos, history, trees, diffs and the pipeline
DAG, served by the daemon's HTTP listener (``--http``) beside ``/metrics``.

- :mod:`.tokens`: the tokens ``trunkfs console`` prints, each mapped to a uid;
- :mod:`.peer`: a socket handler's view of one HTTP request (its uid), so
  every page runs the same handlers, with the same permission checks, as
  the control socket;
- :mod:`.api`: the JSON API the pages call;
- :mod:`.previews`: file previews (text, CSV, images, Parquet);
- :mod:`.app`: the ASGI app (authentication, static files, API, live events);
- ``static/``: the page, its script and style (no build step, no CDN).
"""
