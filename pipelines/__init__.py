"""Pipelines: specs (``spec``), the registry (``registry``), job records
(``jobs``), the scheduler (``scheduler``), the process sandbox (``runner``),
datums (``datums``) and their inputs (``inputs``).

A pipeline runs a command on every new commit of its input branch; its
output is committed to the output repo through the daemon's commit path,
which the scheduler receives in its constructor.
"""
