"""A third-party plugin, as a user would write one: a backend and a reporter."""

from pathlib import Path

from edgebench import hookimpl
from edgebench.contracts import Backend, Reporter


class ToyBackend(Backend):
    name = "toy"
    formats = ("onnx",)
    runtime_modules = ("toyruntime",)
    install_hint = "pip install toyruntime"

    @classmethod
    def host_unavailable_reason(cls):
        return "toyruntime is not installed: pip install toyruntime"

    def export(self, source, workdir, *, imgsz):
        return source

    def runner(self):
        return Path(__file__).with_name("toy_runner.py")


class CsvReporter(Reporter):
    name = "toy-csv"
    filename = "report.csv"

    def render(self, report):
        rows = ["case,status"] + [f"{r.case.id},{r.status.value}" for r in report.cases]
        return "\n".join(rows) + "\n"


@hookimpl
def edgebench_register_backends(register):
    register(ToyBackend)


@hookimpl
def edgebench_register_reporters(register):
    register(CsvReporter)
