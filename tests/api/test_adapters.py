"""Only the adapter modules import the kubernetes client (docs/architecture.md,
"Talking to Kubernetes"): everything else gets plain dicts and callables."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["api", "gateway", "operator", "service_image", "proto", "client"]
ADAPTERS = {
    "api/myservice_api/kubeclient.py",       # credentials, the client factory
    "api/myservice_api/reflector.py",        # the one watcher
    "gateway/myservice_gateway/backends/kubernetes.py",  # the gateway's creates and reads
    "operator/myservice_operator/clients.py",            # the operator's writes
}


def _runtime_imports(tree: ast.AST) -> set[str]:
    """Modules imported outside `if TYPE_CHECKING:` blocks."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_only_the_adapters_import_the_kubernetes_client():
    importers = {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if any(m == "kubernetes" or m.startswith("kubernetes.")
               for m in _runtime_imports(ast.parse(path.read_text(), str(path))))
    }
    assert importers == ADAPTERS
