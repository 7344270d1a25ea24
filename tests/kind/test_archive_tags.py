"""hack/kind/archive_tags.py: a multi-image docker archive whose every image kind counts as built."""
import io
import json
import tarfile

import archive_tags


def test_full_names_follow_dockers_normalisation():
    assert archive_tags.full_name("kindest/kindnetd") == "docker.io/kindest/kindnetd"
    assert archive_tags.full_name("busybox") == "docker.io/library/busybox"
    assert archive_tags.full_name("registry.k8s.io/coredns/coredns") == "registry.k8s.io/coredns/coredns"
    assert archive_tags.full_name("localhost/x") == "localhost/x"
    assert archive_tags.full_name("127.0.0.1:5000/x") == "127.0.0.1:5000/x"


def test_repositories_name_every_image_of_the_manifest():
    manifest = [
        {"Config": "aa.json", "RepoTags": ["registry.k8s.io/kube-proxy:v1.34.4"], "Layers": []},
        {"Config": "bb.json", "RepoTags": ["kindest/kindnetd:v1", "kindest/kindnetd:v2"], "Layers": []},
        {"Config": "cc.json", "RepoTags": None, "Layers": []},
    ]
    assert archive_tags.repositories(manifest) == {
        "registry.k8s.io/kube-proxy": {"v1.34.4": "aa"},
        "docker.io/kindest/kindnetd": {"v1": "bb", "v2": "bb"},
    }


def test_rewrite_puts_repositories_first_and_keeps_every_member(tmp_path):
    path = tmp_path / "images.tar"
    manifest = [{"Config": "aa.json", "RepoTags": ["registry.k8s.io/etcd:3.6.5-0"], "Layers": ["l/layer.tar"]},
                {"Config": "bb.json", "RepoTags": ["kindest/kindnetd:v1"], "Layers": ["l/layer.tar"]}]
    files = {"manifest.json": json.dumps(manifest).encode(), "aa.json": b"{}", "bb.json": b"{}",
             "l/layer.tar": b"layer", "repositories": b"{}"}
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    archive_tags.rewrite(str(path))

    with tarfile.open(path) as tar:
        names = tar.getnames()
        assert names[0] == "repositories"
        assert sorted(names) == sorted(files)
        assert json.load(tar.extractfile("repositories")) == {
            "registry.k8s.io/etcd": {"3.6.5-0": "aa"},
            "docker.io/kindest/kindnetd": {"v1": "bb"},
        }
        assert tar.extractfile("l/layer.tar").read() == b"layer"
        assert json.load(tar.extractfile("manifest.json")) == manifest
