"""The instance's settings: README's table and --help follow the declarations."""
import pytest

from myservice_instance.__main__ import InstanceSettings, build_parser
from tests import settingsdocs


def test_readme_table_documents_every_setting_its_flag_and_default():
    rows = settingsdocs.table_under(settingsdocs.ROOT / "README.md", "## Configuration (instance)")
    assert settingsdocs.problems(InstanceSettings, rows) == []


def test_help_shows_each_flags_variable_and_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(env MYSERVICE_INSTANCE_PORT, default 50051)" in text
    assert "(env MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS, default 900; 0 = off)" in text
    assert "(env MYSERVICE_SESSION_MAX_LIFETIME_SECONDS, default 86400; 0 = off)" in text
    assert "(env MYSERVICE_INSTANCE_WAIT_FOR_CLAIM, default off)" in text
