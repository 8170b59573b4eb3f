"""The metadata language: JSON Schemas per document kind, and the code that loads,
validates, compiles and diffs metadata documents into an immutable model."""

from loom.metadata.compiler import compile_documents
from loom.metadata.loader import Document, Problem, load_and_compile, load_directory, load_text
from loom.metadata.model import AppModel, Entity, Field

__all__ = [
    "AppModel",
    "Document",
    "Entity",
    "Field",
    "Problem",
    "compile_documents",
    "load_and_compile",
    "load_directory",
    "load_text",
]
