"""The static job registries: every job RPC of the protos has exactly one registry entry of its
shape (read from the service descriptors, so a new RPC without a job fails here), the export
servicer installs exactly those, and jobs are peers: no job module imports another, and no
servicer or job finds a job by name (importlib)."""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from facesets.clustering import servicer as clustering_servicer
from facesets.clustering.jobs import registry as clustering_registry
from facesets.clustering.jobs.context import ClusteringJob
from facesets.contract.fields import Params
from facesets.export import servicer as export_servicer
from facesets.export.jobs import registry as export_registry
from facesets.export.jobs.context import ExportJob, ExportQuery
from facesets.v1 import clustering_pb2, common_pb2, export_pb2

EXPORT = export_pb2.DESCRIPTOR.services_by_name["Export"]
CLUSTERING = clustering_pb2.DESCRIPTOR.services_by_name["Clustering"]


def _instances(module: ModuleType, kind: type) -> list[Any]:
    return [value for value in vars(module).values() if isinstance(value, kind)]


def _request_of(job: ClusteringJob[Any, Any]) -> type:
    """The request type a clustering job declares: ClusteringJob[Request, Params]."""
    for base in type(job).__orig_bases__:  # type: ignore[attr-defined]  # set on generic subclasses
        if typing.get_origin(base) is ClusteringJob:
            return typing.get_args(base)[0]
    raise AssertionError(f"{type(job).__name__} declares no request type")


def _job_methods(service: ServiceDescriptor) -> list[MethodDescriptor]:
    """The RPCs that run a job: a stream of JobEvents."""
    event = common_pb2.JobEvent.DESCRIPTOR.full_name
    return [m for m in service.methods if m.server_streaming and m.output_type.full_name == event]


def test_every_export_rpc_has_one_registry_entry_of_its_shape() -> None:
    jobs = _instances(export_registry, ExportJob)
    queries = _instances(export_registry, ExportQuery)
    assert set(map(id, jobs)) == set(map(id, export_registry.JOBS)), "a job not in JOBS"
    assert set(map(id, queries)) == set(map(id, export_registry.QUERIES)), "not in QUERIES"
    by_request: dict[str, list[Any]] = {}
    for entry in [*jobs, *queries]:
        by_request.setdefault(entry.request.DESCRIPTOR.full_name, []).append(entry)
    for method in EXPORT.methods:
        entries = by_request.pop(method.input_type.full_name, [])
        assert len(entries) == 1, f"Export.{method.name}: {len(entries)} registry entries"
        entry = entries[0]
        assert not method.client_streaming, method.name
        assert isinstance(entry, ExportJob) == method.server_streaming, method.name
        assert entry.reply.DESCRIPTOR.full_name == method.output_type.full_name, method.name
        if isinstance(entry, ExportJob):
            assert issubclass(entry.params, Params), method.name  # a contract params class
    assert not by_request, f"registry entries without an RPC: {sorted(by_request)}"
    assert {m.name for m in _job_methods(EXPORT)} == {
        m.name for m in EXPORT.methods if m.server_streaming
    }


def test_the_export_servicer_installs_one_handler_per_rpc() -> None:
    servicer = export_servicer.ExportServicer(clustering=None, inference=None)
    installed = export_servicer.handlers(servicer)
    assert set(installed) == {m.name for m in EXPORT.methods}
    for method in EXPORT.methods:
        handler = installed[method.name]
        assert isinstance(handler, grpc.RpcMethodHandler)
        assert handler.response_streaming == method.server_streaming, method.name
        assert not handler.request_streaming, method.name


def test_every_clustering_job_rpc_runs_one_registry_job() -> None:
    """Each job RPC's servicer method hands one registry job, of the RPC's request type, to
    the one runner; every registry job is run by one RPC (AgeSplit and AgeExtend share a
    request type, so the method is read for the job it names)."""
    jobs = {
        name: job
        for name, job in vars(clustering_registry).items()
        if isinstance(job, ClusteringJob)
    }
    run: list[str] = []
    for method in _job_methods(CLUSTERING):
        body = getattr(clustering_servicer.ClusteringServicer, method.name)
        calls = [
            node
            for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(body))))
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "self._run"
        ]
        assert len(calls) == 1, f"Clustering.{method.name} does not run one registry job"
        named = ast.unparse(calls[0].args[0]).removeprefix("registry.")
        assert named in jobs, f"Clustering.{method.name} runs {named}, not a registry job"
        declared = _request_of(jobs[named]).DESCRIPTOR.full_name
        assert declared == method.input_type.full_name, f"{named} takes {declared}"
        run.append(named)
    assert sorted(run) == sorted(jobs), "a registry job no RPC runs, or one run twice"


def _imported(path: Path, package: str) -> set[str]:
    """Every module `path` imports, `from package import name` read as package.name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == package:
                found.update(f"{package}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize(
    ("registry", "kinds"),
    [(clustering_registry, (ClusteringJob,)), (export_registry, (ExportJob, ExportQuery))],
    ids=["clustering", "export"],
)
def test_no_job_module_imports_another(registry: ModuleType, kinds: tuple[type, ...]) -> None:
    package = registry.__name__.rpartition(".")[0]
    job_modules = {type(entry).__module__ for kind in kinds for entry in _instances(registry, kind)}
    assert len(job_modules) >= 9, job_modules  # the registry lists the jobs (sanity)
    folder = Path(registry.__file__).parent
    for module in sorted(job_modules):
        path = Path(sys.modules[module].__file__ or "")
        assert path.parent == folder, f"{module} lives outside {package}"
        others = (_imported(path, package) & job_modules) - {module}
        assert not others, f"{module} imports the job module(s) {sorted(others)}"
    for path in [*folder.glob("*.py"), folder.parent / "servicer.py"]:
        assert "importlib" not in _imported(path, package), f"{path} finds jobs by name"
