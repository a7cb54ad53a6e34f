"""Projection engine: follow the event store and (re)build read models."""
