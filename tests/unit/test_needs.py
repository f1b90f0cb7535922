"""Lab hosts' ``features`` from every source, and how ``@pytest.mark.needs`` narrows hosts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otto.lab import Lab
from otto.lab.model import check_sources
from otto.testing.marks import hosts_mark, mark_pool, mark_scope
from otto.testing.needs import lacking, with_features

pytest_plugins = ["pytester"]

LAB = {
    "hosts": [
        {"name": "a", "term": "local", "features": ["usb", "wifi"], "tags": ["board"]},
        {"name": "b", "term": "local", "features": ["usb", "usb"], "tags": ["board"]},
        {"name": "c", "term": "local", "tags": ["pc"]},
    ]
}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab.load(write(tmp_path / "lab.json", json.dumps(LAB)))


# --- the lab field ----------------------------------------------------------------------------


def test_json_lab_features(lab: Lab) -> None:
    assert lab.spec("a").features == ("usb", "wifi")
    assert lab.spec("b").features == ("usb",)  # each once
    assert lab.spec("c").features == ()


def test_yaml_lab_features(tmp_path: Path) -> None:
    path = write(
        tmp_path / "lab.yaml",
        "hosts:\n  - name: rig\n    term: local\n    features: [gpu, can-bus, 'v4l2:0']\n",
    )
    assert Lab.load(path).spec("rig").features == ("gpu", "can-bus", "v4l2:0")


@pytest.mark.parametrize(
    "value",
    ["usb", [""], ["two words"], ["usb\n"], [1], ["x" * 65], [f"f{i}" for i in range(65)], {}],
)
def test_bad_features_are_named_with_file_host_and_field(tmp_path: Path, value: object) -> None:
    path = write(
        tmp_path / "lab.json",
        json.dumps({"hosts": [{"name": "rig", "term": "local", "features": value}]}),
    )
    _, _, problems = check_sources([path])
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{path}: host 'rig': field 'features': must be a list of at most 64 feature names "
        "(letters, digits, '_', '.', '+', '-', ':'; at most 64 characters each)"
    )


def test_longest_features_are_taken(tmp_path: Path) -> None:
    features = ["x" * 64, *(f"f{i}" for i in range(63))]
    path = write(
        tmp_path / "lab.json",
        json.dumps({"hosts": [{"name": "rig", "term": "local", "features": features}]}),
    )
    assert Lab.load(path).spec("rig").features == tuple(features)


def test_ansible_host_vars_give_features(tmp_path: Path) -> None:
    pytest.importorskip("ansible")
    path = write(
        tmp_path / "hosts",
        "[boards]\n"
        "b1 ansible_host=10.0.0.1 otto_features=usb,wifi\n"
        'b2 ansible_host=10.0.0.2 otto_features=\'["gpu", "usb"]\'\n'
        "b3 ansible_host=10.0.0.3\n"
        "[boards:vars]\nansible_user=ci\n",
    )
    lab = Lab.load(path)
    assert lab.spec("b1").features == ("usb", "wifi")
    assert lab.spec("b2").features == ("gpu", "usb")
    assert lab.spec("b3").features == ()
    assert all(type(f) is str for f in lab.spec("b2").features)
    yml = write(
        tmp_path / "inv" / "hosts.yml",
        "all:\n  children:\n    rigs:\n      hosts:\n        r1:\n"
        "          otto_features: [can, usb]\n",
    )
    assert Lab.load(yml).spec("r1").features == ("can", "usb")


def test_ansible_bad_features_are_named(tmp_path: Path) -> None:
    pytest.importorskip("ansible")
    path = write(tmp_path / "hosts", "b1 ansible_host=10.0.0.1 otto_features='no way'\n")
    _, _, problems = check_sources([path])
    assert len(problems) == 1 and "host 'b1': field 'features': must be a list" in problems[0]


def test_ssh_config_hosts_get_features_from_a_merged_lab_file(tmp_path: Path) -> None:
    """An OpenSSH config has no place for them: a JSON (or YAML) file merged after it adds them."""
    config = write(tmp_path / "config", "Host rig\n    HostName 10.0.0.9\n    User ci\n")
    extra = write(
        tmp_path / "features.json", json.dumps({"hosts": [{"name": "rig", "features": ["usb"]}]})
    )
    lab = Lab.load([f"ssh:{config}", extra])
    assert lab.spec("rig").features == ("usb",)
    assert lab.spec("rig").address == "10.0.0.9"


# --- needs: picking hosts ---------------------------------------------------------------------


def test_with_features(lab: Lab) -> None:
    assert with_features(lab, lab.names, ["usb"]) == ["a", "b"]
    assert with_features(lab, lab.names, ["usb", "wifi"]) == ["a"]
    assert with_features(lab, lab.names, ["gpu"]) == []
    assert with_features(lab, ["b", "c"], []) == ["b", "c"]


def test_the_skip_reasons() -> None:
    assert lacking(["usb"]) == "no lab host has feature usb"
    assert lacking(["usb", "wifi"]) == "no lab host has features usb, wifi"
    assert (
        lacking(["gpu"], "of those with tags ['board']")
        == "no lab host has feature gpu (of those with tags ['board'])"
    )
    assert lacking(["usb"], found=["a"]) == "only 1 lab host has feature usb (a)"


def test_mark_pool_keeps_the_hosts_with_the_features(lab: Lab) -> None:
    mark = pytest.mark.hosts(tags=["board"]).mark
    assert mark_pool(lab, mark) == (["a", "b"], None)
    assert mark_pool(lab, mark, features=["wifi"]) == (["a"], None)
    assert mark_pool(lab, mark, features=["gpu"]) == ([], None)
    counted = pytest.mark.hosts(tags=["board"], count=2).mark
    assert mark_pool(lab, counted, features=["usb"]) == (["a", "b"], 2)
    assert mark_pool(lab, counted, features=["wifi"]) == ([], 2)  # fewer than it needs
    with pytest.raises(pytest.UsageError, match=r"no host in lab .* has tags"):
        mark_pool(lab, pytest.mark.hosts(tags=["nothing"]).mark, features=["usb"])


def test_needs_alone_amounts_to_a_hosts_mark(pytester: pytest.Pytester, lab: Lab) -> None:
    (item,) = pytester.getitems("import pytest\n@pytest.mark.needs('usb')\ndef test_x(): pass\n")
    one = hosts_mark(item, one=True)
    every = hosts_mark(item, one=False)
    assert one is not None and one.kwargs == {"count": 1}
    assert every is not None and every.kwargs == {} and every.args == ()
    assert mark_scope(lab, item) == (lab.names, 1, "")


def test_needs_marks_add_up(pytester: pytest.Pytester) -> None:
    from otto.testing.needs import needed

    items = pytester.getitems(
        """
        import pytest
        pytestmark = pytest.mark.needs("usb")

        @pytest.mark.needs("wifi", "usb")
        class TestRig:
            @pytest.mark.needs("gpu")
            def test_x(self): pass
        """
    )
    assert [needed(item) for item in items] == [("gpu", "wifi", "usb")]


@pytest.mark.parametrize(
    ("mark", "said"),
    [
        ("needs(3)", "test_bad: @pytest.mark.needs takes feature names (letters, digits, "),
        ("needs('two words')", "not 'two words'"),
        ("needs(feature='usb')", "takes feature names only, not feature="),
    ],
)
def test_a_bad_needs_mark_is_a_collection_error(
    pytester: pytest.Pytester, mark: str, said: str
) -> None:
    pytester.makepyfile(f"import pytest\n@pytest.mark.{mark}\ndef test_bad(): pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    # The module's collection fails, naming the test and the mark (otto test: exit 1).
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "ERROR collecting" in result.stdout.str()
    assert said in result.stdout.str()


def test_module_marks_and_counts_skip_with_their_reasons(pytester: pytest.Pytester) -> None:
    lab = write(pytester.path / "lab.json", json.dumps(LAB))
    pytester.makepyfile(
        test_module="""
        import pytest
        pytestmark = pytest.mark.needs("gpu")

        def test_in_a_gpu_module():
            raise AssertionError("no gpu")
        """,
        test_count="""
        import pytest

        @pytest.mark.needs("wifi")
        @pytest.mark.hosts(tags=["board"], count=2)
        def test_two_wifi_boards(hosts):
            raise AssertionError("one board has wifi")

        @pytest.mark.needs("usb")
        @pytest.mark.hosts(tags=["board"], count=2)
        def test_two_usb_boards(hosts):
            assert sorted(hosts) == ["a", "b"]
        """,
    )
    result = pytester.runpytest_subprocess(
        "--lab", str(lab), "--output", "run", "-rs", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1, skipped=2)
    out = result.stdout.str()
    assert (
        "test_count.py:3: only 1 lab host has feature wifi (a) (of those with tags ['board'])"
        in out
    )
    assert "test_module.py: no lab host has feature gpu" in out
