"""The interpreter example's wire contract (stubs generated in v1/ by the build)."""
