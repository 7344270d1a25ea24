"""Client-side tools: the `integrationtests` scenarios run against a gateway."""
