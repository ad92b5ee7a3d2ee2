"""A job's request and its parameters object meet by field name (contract/fields.py
`given_fields` and `request_fields`): a renamed field on either side must not go unnoticed."""

from __future__ import annotations

import dataclasses

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message_factory import GetMessageClass

from facesets.contract import clustering
from facesets.contract.export import DedupOptimizeParams, ExportSwapParams, OcclusionParams
from facesets.contract.fields import LinkMode, Params, request_fields
from facesets.contract.video import VideoCutParams, VideoPlanParams
from facesets.v1 import clustering_pb2, export_pb2

PAIRS = [
    (clustering.ClusterParams, clustering_pb2.ClusterRequest),
    (clustering.RefineParams, clustering_pb2.RefineRequest),
    (clustering.ExtendParams, clustering_pb2.ExtendRequest),
    (clustering.DedupParams, clustering_pb2.DedupRequest),
    (clustering.ConsolidateParams, clustering_pb2.ConsolidateRequest),
    (clustering.RouteParams, clustering_pb2.RouteRequest),
    (clustering.ImportFoldersParams, clustering_pb2.ImportFoldersRequest),
    (clustering.DiscoverParams, clustering_pb2.DiscoverRequest),
    (clustering.AgeProbeParams, clustering_pb2.AgeProbeRequest),
    (clustering.AgeSplitParams, clustering_pb2.AgeSplitRequest),
    (ExportSwapParams, export_pb2.ExportSwapRequest),
    (VideoPlanParams, export_pb2.PlanVideosRequest),
    (VideoCutParams, export_pb2.CutSegmentsRequest),
    (OcclusionParams, export_pb2.OcclusionRequest),
    (DedupOptimizeParams, export_pb2.DedupOptimizeRequest),
]


@pytest.mark.parametrize("params, request_type", PAIRS, ids=lambda p: p.__name__)
def test_every_optional_request_field_is_a_params_field(params, request_type):
    fields = {field.name for field in dataclasses.fields(params)}
    optional = {
        f.name
        for f in request_type.DESCRIPTOR.fields
        if f.has_presence and f.type != FieldDescriptor.TYPE_MESSAGE
    }
    assert optional <= fields, optional - fields


@pytest.mark.parametrize("params, request_type", PAIRS, ids=lambda p: p.__name__)
def test_every_params_field_is_a_request_field(params, request_type):
    """The other way: a parameter the request does not carry would be a flag of the command
    that changes nothing (dedup's --face-similarity and three more were dropped on the wire,
    as were five of refine, route, discover and consolidate)."""
    declared = set(request_type.DESCRIPTOR.fields_by_name)
    fields = {field.name for field in dataclasses.fields(params)}
    assert fields <= declared, fields - declared


@pytest.mark.parametrize("params, request_type", PAIRS, ids=lambda p: p.__name__)
def test_parameters_survive_their_request(params, request_type):
    """Every field the request declares, changed from its default, comes back as sent."""
    sent = _changed(params, request_type)
    assert sent != params()
    request = request_type(**request_fields(sent, request_type))
    assert params.from_request(request) == sent
    assert params.from_request(request_type()) == params()


def _changed(params, request_type):
    """A params object with every field the request declares changed from its default (the
    fields of a parameter group inside their own message)."""
    declared = request_type.DESCRIPTOR.fields_by_name
    changed = {}
    for field in dataclasses.fields(params):
        if field.name not in declared:
            continue
        default = getattr(params(), field.name)
        if isinstance(default, Params):
            group = GetMessageClass(declared[field.name].message_type)
            changed[field.name] = _changed(type(default), group)
        elif isinstance(default, bool):
            changed[field.name] = not default
        elif field.name == "link_mode":
            changed[field.name] = LinkMode.COPY
        elif isinstance(default, int):
            changed[field.name] = default + 1
        elif isinstance(default, str):
            changed[field.name] = default + " indeed"
        elif isinstance(default, tuple):
            changed[field.name] = (*default, "a face behind a hand")
        else:  # in every float's range, and exact in the proto's float32
            changed[field.name] = 0.5 if default == 0.25 else 0.25
    return params(**changed)
