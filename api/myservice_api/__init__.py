"""The MyServiceSession API: the Kubernetes side of the contract between the
gateway (creates sessions, routes by their status) and the operator (owns their
pods, writes their status). Pure: no I/O, no Kubernetes client.

- crd.py: group, version, kind, phases, reasons, labels (what the CRD says);
- names.py: the resource and pod names of a (user, session_id).

The wire contract of the gRPC API is proto/ (package myservice); this is not it.
"""
