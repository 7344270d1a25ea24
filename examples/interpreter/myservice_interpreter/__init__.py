"""A per-session Python interpreter hosted by MyService: the example service of docs/instances.md."""
