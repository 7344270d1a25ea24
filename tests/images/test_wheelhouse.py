"""hack/images/wheelhouse.py: which wheels fit the image, and each image's requirements."""
import zipfile

import pytest
import wheelhouse


@pytest.mark.parametrize("name", [
    "kubernetes-37.0.2-py2.py3-none-any.whl",
    "grpcio-1.85.3-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
    "protobuf-7.36.2-cp310-abi3-manylinux2014_x86_64.whl",
    "bcrypt-5.0.0-cp39-abi3-manylinux_2_34_x86_64.whl",
])
def test_pure_cp311_and_older_abi3_wheels_for_glibc_236_fit(name):
    assert wheelhouse.fits(name)


@pytest.mark.parametrize("name", [
    "grpcio-1.85.3-cp312-cp312-manylinux2014_x86_64.whl",  # another Python
    "x-1.0-cp312-abi3-manylinux2014_x86_64.whl",  # abi3 from a newer Python
    "x-1.0-cp311-cp311-manylinux_2_39_x86_64.whl",  # a newer glibc than bookworm's
    "x-1.0-cp311-cp311-musllinux_1_2_x86_64.whl",
    "x-1.0-py3-none-macosx_11_0_arm64.whl",
])
def test_other_wheels_do_not(name):
    assert not wheelhouse.fits(name)


def test_requirements_without_extras_and_the_service_image_without_the_excluded(tmp_path):
    wheel = tmp_path / "myservice-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("myservice-0.1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: myservice\n"
                   "Requires-Dist: grpcio>=1.85.1\nRequires-Dist: kopf>=1.45\nRequires-Dist: Kubernetes>=30.1\n"
                   "Requires-Dist: pytest>=8; extra == \"test\"\n")
        z.writestr("myservice/v1/myservice_pb2.py", "")
    assert wheelhouse.main(["requirements", str(wheel), "kopf kubernetes", str(tmp_path)]) == 0
    assert (tmp_path / "req-gateway.txt").read_text() == "grpcio>=1.85.1\nkopf>=1.45\nKubernetes>=30.1\n"
    assert (tmp_path / "req-service.txt").read_text() == "grpcio>=1.85.1\n"
    assert wheelhouse.stubs(str(wheel)) == ["myservice/v1/myservice_pb2.py"]
