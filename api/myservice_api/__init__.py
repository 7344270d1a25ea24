"""The MyServiceSession API: the Kubernetes side of the contract between the
gateway (creates sessions, routes by their status) and the operator (owns their
pods, writes their status), and how both reach the Kubernetes API.

- crd.py: group, version, kind, phases, reasons, labels (what the CRD says);
- names.py: the resource and pod names of a (user, session_id);
- kubeclient.py: credentials loaded once, the one API client factory;
- reflector.py: the one watcher (list + watch, re-list on 410, backoff);
- settings.py: how gateway, operator and instance declare each setting once
  (variable, flag, default, rule, help), and the settings more than one reads;
- pins.py: code that relies on a library's internals runs only on a tested version.

crd.py, names.py and settings.py are pure; kubeclient.py and reflector.py are the adapters,
the only modules here that import the kubernetes client.

The wire contract of the gRPC API is proto/ (package myservice); this is not it.
"""
