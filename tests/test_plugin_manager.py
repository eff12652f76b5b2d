"""The plugin manager: entry points, duplicates, blocking, misspelt hooks, third parties."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from edgebench import hookimpl
from edgebench.cli import main
from edgebench.contracts import Backend, Compressor
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
    assert str(err.value) == (
        "backend 'onnxruntime' is registered by both plugin 'onnxruntime' and plugin "
        "'shadow-plugin'; disable one before the sub-command, e.g. "
        "'edgebench --disable shadow-plugin run ...'.")


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

    with pytest.raises(PluginError) as err:
        make_plugin_manager(extra_plugins=[("typo", Typo())])
    assert str(err.value) == ("plugin 'typo' implements an unknown hook "
                              "'edgebench_register_backend'; did you mean "
                              "'edgebench_register_backends'?")


def test_hook_with_a_wrong_argument_name_is_one_sentence() -> None:
    class WrongArg:
        @hookimpl
        def edgebench_register_backends(self, regster):  # type: ignore[no-untyped-def]
            pass

    with pytest.raises(PluginError) as err:
        make_plugin_manager(extra_plugins=[("wrongarg", WrongArg())])
    assert str(err.value) == (
        "plugin 'wrongarg' implements hook 'edgebench_register_backends' with argument(s) "
        "'regster' that the hook does not have; its arguments are 'register'.")


def test_registering_an_instance_is_refused() -> None:
    pm = make_plugin_manager(extra_plugins=[("inst", _registering("backend", _Backend()))])
    with pytest.raises(PluginError) as err:
        collect_registry(pm)
    assert str(err.value) == (
        f"plugin 'inst' registered an instance of {__name__}._Backend as a backend; register "
        "the class itself (register(_Backend), not register(_Backend()).")


def test_a_register_hook_that_raises_is_one_sentence() -> None:
    class Buggy:
        @hookimpl
        def edgebench_register_reporters(self, register):  # type: ignore[no-untyped-def]
            raise NameError("name 'Reportr' is not defined")

    pm = make_plugin_manager(extra_plugins=[("buggy", Buggy())])
    with pytest.raises(PluginError) as err:
        collect_registry(pm)
    assert str(err.value) == (
        "plugin 'buggy' failed in edgebench_register_reporters: NameError: name 'Reportr' is "
        "not defined; fix it, or skip it with 'edgebench --disable buggy COMMAND'.")


class _Compressor(Compressor):
    name = "toyc"
    target = "onnx"
    summary = "x"
    option_defaults: ClassVar[Mapping[str, Any]] = {"ratio": 0.5, "mode": "a"}
    option_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {"mode": ("a", "b")}
    primary_option = "ratio"

    def apply(self, model, options, context):  # type: ignore[no-untyped-def]
        return model


class _OkBackend(_Backend):
    name = "okbackend"


@pytest.mark.parametrize("base, member, value, must", [
    (_OkBackend, "formats", "onnx", "a tuple of non-empty strings"),
    (_OkBackend, "formats", (), "a tuple of at least one format"),
    (_OkBackend, "runtime_modules", "onnxruntime", "a tuple of non-empty strings"),
    (_OkBackend, "runtime_modules", ("",), "a tuple of non-empty strings"),
    (_OkBackend, "install_hint", None, "a string"),
    (_OkBackend, "device_requirements", "onnxruntime", "a tuple of non-empty strings"),
    (_OkBackend, "option_defaults", ["x"], "a mapping of option name (str) to a default"),
    (_OkBackend, "option_defaults", {"x": None}, "a mapping of option name (str) to a default"),
    (_OkBackend, "option_defaults", {1: True}, "a mapping of option name (str) to a default"),
    (_OkBackend, "option_choices", ["x"], "a mapping of option name to a tuple"),
    (_OkBackend, "option_choices", {"x": (1,)}, "keyed by options of option_defaults"),
    (_OkBackend, "max_batch", 0, "None (any batch) or an int >= 1"),
    (_OkBackend, "max_batch", True, "None (any batch) or an int >= 1"),
    (_OkBackend, "max_batch", 2.0, "None (any batch) or an int >= 1"),
    (_OkBackend, "boxes_normalised", "yes", "None (detect), True or False"),
    (_OkBackend, "compression_format", "", "None or a format name"),
    (_OkBackend, "compression_format", ("openvino",), "None or a format name"),
    (_Compressor, "option_choices", {"mode": ["a", "b"]}, "a tuple of allowed values for"),
    (_Compressor, "option_choices", {"mode": ("b", "c")},
     "a tuple of allowed values for 'mode' that contains its default 'a'"),
    (_Compressor, "primary_option", "fraction", "None or one of the options"),
    (_Compressor, "summary", "", "a non-empty string"),
    (_Compressor, "torch_safe_globals", "m:C", "a tuple of non-empty strings"),
])
def test_a_wrongly_typed_member_is_refused(base: type, member: str, value: object,
                                           must: str) -> None:
    bad = type("Bad", (base,), {member: value, "__module__": __name__})
    kind = "backend" if issubclass(base, Backend) else "compressor"
    pm = make_plugin_manager(extra_plugins=[("badm", _registering(kind, bad))])
    with pytest.raises(PluginError) as err:
        collect_registry(pm)
    assert str(err.value).startswith(
        f"plugin 'badm' registered {__name__}.Bad with {member} = {value!r} "
        f"(a {type(value).__name__}); it must be {must}")
    assert str(err.value).endswith(".") and "\n" not in str(err.value)


def test_well_typed_members_are_accepted() -> None:
    class Good(_OkBackend):
        runtime_modules = ()
        option_defaults: ClassVar[Mapping[str, Any]] = {"fp16": False, "n": 1, "r": 0.5,
                                                        "s": "x"}
        option_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {"s": ("x", "y")}
        max_batch = 1
        boxes_normalised = True
        compression_format = "onnx"

    pm = make_plugin_manager(extra_plugins=[
        ("good", _registering("backend", Good)), ("goodc", _registering("compressor",
                                                                          _Compressor))])
    registry = collect_registry(pm)
    assert registry.get(PluginKind.BACKEND, "okbackend").cls is Good
    assert registry.get(PluginKind.COMPRESSOR, "toyc/onnx").cls is _Compressor


def test_a_backend_without_runtime_modules_is_not_skipped_for_them() -> None:
    from edgebench.errors import CaseSkipped
    from edgebench.execution import _check_supported
    from edgebench.records import DeviceInfo

    info = DeviceInfo(uri="local", hostname=None, arch="x86_64", os="linux", cpu_model=None,
                      cores=None, ram_bytes=None, python=None, governor=None,
                      temperature_c=None, runtimes={"numpy": "2"})
    _check_supported(_OkBackend(), info, "local", "python3")  # () means: no runtime module to check

    class NeedsRt(_OkBackend):
        runtime_modules = ("toyrt",)

    with pytest.raises(CaseSkipped) as err:
        _check_supported(NeedsRt(), info, "local", "/opt/py/bin/python3")
    assert str(err.value) == ("toyrt is not installed on local; install the package that provides "
                              "toyrt for /opt/py/bin/python3 there (the okbackend backend does "
                              "not name it)")

    class Pip(NeedsRt):
        device_requirements = ("toyrt>=1", "numpy<2")

    with pytest.raises(CaseSkipped) as err:
        _check_supported(Pip(), info, "local", "/opt/py/bin/python3")
    assert str(err.value) == ("toyrt is not installed on local; install it there with: "
                              "/opt/py/bin/python3 -m pip install 'toyrt>=1' 'numpy<2'")


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
            "with torch_safe_globals = ('C2fSplit',) (a tuple); it must be a tuple of "
            "'package.module:Class' strings.")):
        collect_registry(pm)


def _block(out: str, heading: str, name: str) -> list[str]:
    """The lines of entry ``name`` under ``heading:`` in ``edgebench plugins``' output."""
    lines = out.splitlines()
    start = lines.index(f"{heading}:")
    section = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        section.append(line)
    found: list[str] = []
    for line in section:
        if not line.startswith("   "):
            if found:
                break
            if line.startswith(f"  {name}  "):
                found.append(line)
        elif found:
            found.append(line)
    return found


def test_plugins_command_lists_kinds_and_usability(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for heading, name in [("backends", "onnxruntime"), ("devices", "local"),
                          ("reporters", "json"), ("reporters", "markdown"),
                          ("reporters", "html"), ("hook-only plugins", "thermal")]:
        block = " ".join(_block(out, heading, name))
        assert "edgebench" in block and "usable here: yes" in block, (heading, name, out)
    assert "(hooks: edgebench_run_case)" in " ".join(
        line.strip() for line in _block(out, "hook-only plugins", "thermal"))
    assert all(len(line) <= 80 for line in out.splitlines()), out


def test_plugins_command_disable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    assert _block(capsys.readouterr().out, "backends", "onnxruntime")
    assert main(["--disable", "onnxruntime", "plugins"]) == 0
    out = capsys.readouterr().out
    assert not _block(out, "backends", "onnxruntime") and "disabled: onnxruntime" in out
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
    toy = _block(done.stdout, "backends", "toy")
    assert toy == ["  toy  (edgebench-toy-plugin 0.3.1, plugin 'toy')",
                   "    formats: onnx",
                   "    usable here: no: toyruntime is not installed: pip install toyruntime",
                   "    install: pip install toyruntime",
                   "    on a device: a package providing toyruntime"], done.stdout
    assert _block(done.stdout, "reporters", "toy-csv")


def test_third_party_plugin_can_be_disabled(toy_site: Path) -> None:
    done = _edgebench(toy_site, "--disable", "toy", "plugins")
    assert done.returncode == 0, done.stderr
    assert not _block(done.stdout, "backends", "toy") and "toy-csv" not in done.stdout


def test_explicitly_requested_unusable_backend_is_a_clear_error(toy_site: Path) -> None:
    done = _edgebench(toy_site, "run", "--backend", "toy", "-n", "1")
    assert done.returncode == 2
    assert done.stderr.strip() == ("edgebench: error: backend 'toy' cannot run here: "
                                   "toyruntime is not installed: pip install toyruntime.")


def _fake_distribution(site: Path, module: str, source: str) -> None:
    """A third-party distribution ``my-eb-<module>`` 0.1, installed by hand into ``site`` (a
    ``.dist-info`` with its entry point ``<module>`` and the module), as pip would."""
    (site / f"{module}.py").write_text(source)
    info = site / f"my_eb_{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: my-eb-{module}\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text(f"[edgebench]\n{module} = {module}\n")


@pytest.mark.parametrize("module, source, error", [
    ("broken", "import no_such_module_xyz\n",
     "plugin 'broken' (my-eb-broken 0.1) failed to load: importing 'broken' raised "
     "ModuleNotFoundError: No module named 'no_such_module_xyz'; fix or uninstall it, or skip "
     "it with 'edgebench --disable broken COMMAND'."),
    ("typo", "from edgebench import hookimpl\n@hookimpl\n"
             "def edgebench_register_backend(register):\n    pass\n",
     "plugin 'typo' (my-eb-typo 0.1) implements an unknown hook 'edgebench_register_backend'; "
     "did you mean 'edgebench_register_backends'?"),
    ("wrongarg", "from edgebench import hookimpl\n@hookimpl\n"
                 "def edgebench_register_backends(regster):\n    pass\n",
     "plugin 'wrongarg' (my-eb-wrongarg 0.1) implements hook 'edgebench_register_backends' "
     "with argument(s) 'regster' that the hook does not have; its arguments are 'register'."),
    ("listopts", "from pathlib import Path\nfrom edgebench import hookimpl\n"
                 "from edgebench.contracts import Backend\n"
                 "class B(Backend):\n    name = 'listopts'\n    formats = ('onnx',)\n"
                 "    option_defaults = ['x']\n"
                 "    def export(self, source, workdir, *, imgsz): return source\n"
                 "    def runner(self): return Path(__file__)\n"
                 "@hookimpl\ndef edgebench_register_backends(register):\n    register(B)\n",
     "plugin 'listopts' registered listopts.B with option_defaults = ['x'] (a list); it must "
     "be a mapping of option name (str) to a default that is a bool, int, float or str, "
     "e.g. {'fp16': False}."),
])
def test_a_broken_third_party_plugin_is_one_sentence(tmp_path: Path, module: str, source: str,
                                                     error: str) -> None:
    _fake_distribution(tmp_path, module, source)
    done = _edgebench(tmp_path, "plugins")
    assert (done.returncode, done.stderr.strip()) == (2, f"edgebench: error: {error}")
    assert _edgebench(tmp_path, "--disable", module, "plugins").returncode == 0


@pytest.mark.parametrize("default, value, kind", [
    (1, "x", "an int"), (0.5, "x", "a float"), (True, "maybe", "a bool")])
def test_option_type_error_uses_the_right_article(default: object, value: object,
                                                  kind: str) -> None:
    from edgebench.contracts import checked_option
    from edgebench.errors import UserError

    with pytest.raises(UserError) as err:
        checked_option("backend 'b'", "k", value, {"k": default}, {})
    assert str(err.value) == f"backend 'b' option 'k' must be {kind}, got {value!r}."


def test_a_plugin_without_options_says_so() -> None:
    from edgebench.errors import UserError
    from edgebench.plugin_options import checked_option

    with pytest.raises(UserError, match=r"^backend 'x' takes no options; got 'threads'\.$"):
        checked_option("backend 'x'", "threads", 2, {}, {})


def test_plugins_listing_quotes_the_device_command(capsys: pytest.CaptureFixture[str]) -> None:
    """A requirement with a version bound is shell-quoted: unquoted, ``>`` redirects."""
    import shlex

    from edgebench.cli import main

    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    commands = [line.split("on a device: ", 1)[1] for line in out.splitlines()
                if "on a device: DEVICE_PYTHON" in line]
    assert commands and "DEVICE_PYTHON -m pip install 'openvino>=2024.6'" in out
    for command in commands:  # each one parses back to the same words, no redirection
        assert ">" not in shlex.split(command)[-1] or command.count("'") >= 2
