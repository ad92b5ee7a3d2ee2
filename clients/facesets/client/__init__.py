"""Typed Python clients of the facesets services."""

from facesets.client.channel import (
    ConnectionProblem,
    Endpoint,
    ServiceUnavailableError,
    TokenRefusedError,
)
from facesets.client.clustering import ClusteringClient
from facesets.client.export import ExportClient
from facesets.client.files import FileStamp
from facesets.client.inference import ImageInput, InferenceClient

__all__ = [
    "ClusteringClient",
    "ConnectionProblem",
    "Endpoint",
    "ExportClient",
    "FileStamp",
    "ImageInput",
    "InferenceClient",
    "ServiceUnavailableError",
    "TokenRefusedError",
]
