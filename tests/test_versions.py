"""The supported range of the core libraries: declared once, checked at the start of every command."""

import logging

import pytest
from helpers import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from flowers_hf.core.cli import run_cli
from flowers_hf.core.errors import VersionError
from flowers_hf.core.versions import SUPPORTED, check_versions, installed_versions, requirement, too_old


def _requirements(path) -> dict[str, Requirement]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    parsed = [Requirement(line) for line in lines if line and not line.startswith("-")]
    return {canonicalize_name(req.name): req for req in parsed}


def test_requirements_declare_the_supported_ranges():
    declared = _requirements(ROOT / "requirements.txt")
    for package in SUPPORTED:
        assert str(declared[package].specifier) == str(Requirement(requirement(package)).specifier), package


def test_the_constraints_pins_lie_in_every_declared_range():
    # make setup installs constraints.txt's pins; each must satisfy requirements.txt, the core ranges included.
    declared = _requirements(ROOT / "requirements.txt")
    pins = {name: next(iter(req.specifier)).version for name, req in _requirements(ROOT / "constraints.txt").items()}
    for name, req in declared.items():
        assert req.specifier.contains(pins[name]), f"{name}: {pins[name]} not in {req.specifier}"


def test_this_environment_passes():
    assert all(installed_versions()[package] is not None for package in ("torch", "transformers", "timm"))
    check_versions()


def test_an_older_library_is_named_with_the_version_found_the_oldest_and_the_fix():
    with pytest.raises(VersionError) as raised:
        check_versions({"transformers": "5.16.1", "huggingface-hub": "1.32.0", "torch": "2.14.1", "timm": None})
    message = str(raised.value)
    assert "\n" not in message
    assert "transformers 5.16.1 (needs >=5.17.0)" in message and "huggingface-hub 1.32.0 (needs >=1.33.0)" in message
    assert message.endswith("pip install 'transformers>=5.17.0,<6' 'huggingface-hub>=1.33.0,<3'")
    assert "torch" not in message


@pytest.mark.parametrize(
    ("version", "old"),
    [("2.11.0", False), ("2.11.0+cu130", False), ("2.11.0a0+ecf3bae", False), ("2.10.2", True), ("2.9.0+cpu", True)],
)
def test_a_build_counts_as_its_release(version, old):
    # Vendors' images carry local and pre-release torch builds (NGC's 2.11.0a0+…): judged by the release.
    assert bool(too_old({"torch": version})) is old


def test_a_newer_major_is_allowed_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="flowers_hf.core.versions"):
        assert too_old({"transformers": "6.0.0"}) == {}
    assert "transformers 6.0.0 is newer than the tested range transformers>=5.17.0,<6" in caplog.text


def test_a_command_stops_in_one_line_before_its_work(monkeypatch, caplog):
    monkeypatch.setattr("flowers_hf.core.versions.installed_versions", lambda: {"transformers": "5.0.0"})
    ran = []
    with caplog.at_level(logging.ERROR):
        assert run_cli(ran.append, ["--help"]) == 1
    assert ran == []
    (record,) = caplog.records
    assert record.getMessage() == (
        "VersionError: installed transformers 5.0.0 (needs >=5.17.0); "
        "upgrade with: pip install 'transformers>=5.17.0,<6'"
    )
