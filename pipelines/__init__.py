"""Pipelines: specs, the registry, datums, inputs, the scheduler and the runner.

A pipeline runs a command on every new commit of its input branch; its
output is committed to the output repo through the daemon's commit path,
which the scheduler receives in its constructor.
"""
