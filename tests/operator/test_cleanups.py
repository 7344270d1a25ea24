"""The uninstall cleanup's pure part."""
from myservice_operator.cleanups import finalizers_without


def test_cleanup_keeps_other_finalizers():
    assert finalizers_without(["a/b", "myservice.io/operator", "c/d"], "myservice.io/operator") == ["a/b", "c/d"]
    assert finalizers_without(["myservice.io/operator"], "myservice.io/operator") == []
    assert finalizers_without([], "myservice.io/operator") == []
