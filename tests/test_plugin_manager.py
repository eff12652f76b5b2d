"""The plugin manager: entry points, duplicates, blocking, misspelt hooks, third parties."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgebench import hookimpl
from edgebench.cli import main
from edgebench.contracts import Backend
from edgebench.errors import PluginError
from edgebench.plugin_manager import PluginKind, collect_registry, make_plugin_manager

TOY = Path(__file__).parent / "toy_plugin"


class _Backend(Backend):
    name = "onnxruntime"
    formats = ("onnx",)

    def export(self, source, workdir, *, imgsz):  # type: ignore[no-untyped-def]
        return source

    def runner(self) -> Path:
        return Path(__file__)


class _Shadowing:
    """A plugin that tries to take a name a first-party plugin already has."""

    @hookimpl
    def edgebench_register_backends(self, register):  # type: ignore[no-untyped-def]
        register(_Backend)


def test_first_party_plugins_load_through_entry_points() -> None:
    pm = make_plugin_manager()
    names = {name for name, _ in pm.list_name_plugin()}
    assert {"onnxruntime", "local", "json", "markdown"} <= names
    dists = {pm.get_name(p): d.project_name for p, d in pm.list_plugin_distinfo()}
    assert dists["onnxruntime"] == "edgebench"  # loaded as an entry point, like a third party's
    registry = collect_registry(pm)
    assert set(registry.of(PluginKind.BACKEND)) >= {"onnxruntime"}
    assert set(registry.of(PluginKind.DEVICE)) >= {"local"}
    reg = registry.get(PluginKind.BACKEND, "onnxruntime")
    assert reg.plugin == "onnxruntime" and reg.distribution == "edgebench"


def test_two_plugin_managers_are_independent() -> None:
    first = make_plugin_manager(disabled=["onnxruntime"])
    second = make_plugin_manager()
    assert first.get_plugin("onnxruntime") is None
    assert second.get_plugin("onnxruntime") is not None


def test_duplicate_name_names_both_plugins() -> None:
    pm = make_plugin_manager(extra_plugins=[("shadow-plugin", _Shadowing())])
    with pytest.raises(PluginError) as err:
        collect_registry(pm)
    assert "'onnxruntime'" in str(err.value) and "'shadow-plugin'" in str(err.value)


def test_blocking_a_plugin() -> None:
    registry = collect_registry(make_plugin_manager(disabled=["onnxruntime"]))
    assert "onnxruntime" not in registry.of(PluginKind.BACKEND)
    with pytest.raises(PluginError, match="unknown backend 'onnxruntime'"):
        registry.get(PluginKind.BACKEND, "onnxruntime")


@pytest.mark.parametrize("name", ["local", "json"])
def test_essential_plugins_cannot_be_disabled(name: str) -> None:
    with pytest.raises(PluginError, match="essential"):
        make_plugin_manager(disabled=[name])


def test_misspelt_hook_fails_loudly() -> None:
    class Typo:
        @hookimpl
        def edgebench_register_backend(self, register):  # type: ignore[no-untyped-def]
            pass

    with pytest.raises(PluginError, match="unknown hook"):
        make_plugin_manager(extra_plugins=[("typo", Typo())])


def test_register_without_name_is_refused() -> None:
    class Nameless(_Backend):
        name = ""

    class Bad:
        @hookimpl
        def edgebench_register_backends(self, register):  # type: ignore[no-untyped-def]
            register(Nameless)

    with pytest.raises(PluginError, match="without a string 'name'"):
        collect_registry(make_plugin_manager(extra_plugins=[("bad", Bad())]))


def _registering(kind: str, cls: type) -> object:
    """A plugin registering ``cls`` through the ``edgebench_register_<kind>s`` hook."""
    import types

    def register_all(register):  # type: ignore[no-untyped-def]
        register(cls)

    register_all.__name__ = f"edgebench_register_{kind}s"
    return types.SimpleNamespace(**{register_all.__name__: hookimpl(register_all)})


@pytest.mark.parametrize("kind, base", [("backend", "Backend"), ("compressor", "Compressor"),
                                        ("device", "Device"), ("reporter", "Reporter")])
def test_a_class_not_subclassing_the_base_class_is_refused(kind: str, base: str) -> None:
    class Duck:  # every member a backend, compressor, device or reporter needs, no base class
        name = scheme = "duck"
        target = "onnx"
        summary = filename = "duck"
        formats = ("onnx",)

    pm = make_plugin_manager(extra_plugins=[("ducks", _registering(kind, Duck))])
    with pytest.raises(PluginError) as err:
        collect_registry(pm)
    assert str(err.value) == (
        f"plugin 'ducks' registered {__name__}.{Duck.__qualname__} as a {kind}, but it does "
        f"not subclass edgebench.contracts.{base}; make it a subclass (the base class gives "
        "every optional member a default).")


def test_a_class_leaving_an_abstract_method_is_refused() -> None:
    class NoRunner(Backend):
        name = "norunner"
        formats = ("onnx",)

        def export(self, source, workdir, *, imgsz):  # type: ignore[no-untyped-def]
            return source

    pm = make_plugin_manager(extra_plugins=[("half", _registering("backend", NoRunner))])
    with pytest.raises(PluginError, match=r"^plugin 'half' registered .*NoRunner without "
                       r"implementing runner \(abstract in edgebench.contracts.Backend\)\.$"):
        collect_registry(pm)


def test_a_compressor_without_target_is_refused() -> None:
    from edgebench.contracts import Compressor

    class NoTarget(Compressor):
        name = "notarget"
        summary = "x"

        def apply(self, model, options, context):  # type: ignore[no-untyped-def]
            return model

    pm = make_plugin_manager(extra_plugins=[("nt", _registering("compressor", NoTarget))])
    with pytest.raises(PluginError, match="NoTarget without a string 'target'"):
        collect_registry(pm)


def test_torch_safe_globals_must_name_module_and_class() -> None:
    from edgebench.contracts import Compressor

    class Vague(Compressor):
        name = "vague"
        target = "pt"
        summary = "x"
        torch_safe_globals = ("C2fSplit",)

        def apply(self, model, options, context):  # type: ignore[no-untyped-def]
            return model

    pm = make_plugin_manager(extra_plugins=[("v", _registering("compressor", Vague))])
    with pytest.raises(PluginError, match=re.escape(
            "with torch_safe_globals ('C2fSplit',); give a tuple of 'package.module:Class' "
            "strings")):
        collect_registry(pm)


def test_plugins_command_lists_kinds_and_usability(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for kind, name in [("backend", "onnxruntime"), ("device", "local"), ("reporter", "json"),
                       ("reporter", "markdown"), ("reporter", "html"), ("hooks", "thermal")]:
        line = next(line for line in out.splitlines() if f"{kind} " in line and name in line)
        assert "edgebench" in line and "yes" in line
    assert "(hooks: edgebench_run_case)" in out  # a wrapper-only plugin says what it hooks


def test_plugins_command_disable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--disable", "onnxruntime", "plugins"]) == 0
    out = capsys.readouterr().out
    assert "backend   onnxruntime" not in out and "disabled: onnxruntime" in out
    assert main(["--disable", "local", "plugins"]) == 2
    assert "essential" in capsys.readouterr().err


@pytest.fixture(scope="module")
def toy_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy third-party distribution, really installed (pip) into a private site dir."""
    target = tmp_path_factory.mktemp("toy-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(TOY)], check=True, timeout=300)
    return target


def _edgebench(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "edgebench.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_third_party_plugin_is_discovered(toy_site: Path) -> None:
    done = _edgebench(toy_site, "plugins")
    assert done.returncode == 0, done.stderr
    toy = next(line for line in done.stdout.splitlines() if " toy " in line)
    assert "backend" in toy and "edgebench-toy-plugin" in toy and "0.3.1" in toy
    assert "no: toyruntime is not installed: pip install toyruntime" in toy
    assert any("toy-csv" in line and "reporter" in line for line in done.stdout.splitlines())


def test_third_party_plugin_can_be_disabled(toy_site: Path) -> None:
    done = _edgebench(toy_site, "--disable", "toy", "plugins")
    assert done.returncode == 0, done.stderr
    assert " toy " not in done.stdout and "toy-csv" not in done.stdout


def test_explicitly_requested_unusable_backend_is_a_clear_error(toy_site: Path) -> None:
    done = _edgebench(toy_site, "run", "--backend", "toy", "-n", "1")
    assert done.returncode == 2
    assert done.stderr.strip() == ("edgebench: error: backend 'toy' cannot run here: "
                                   "toyruntime is not installed: pip install toyruntime.")
