"""The metadata language: JSON Schemas per document kind, and the code that loads,
validates, compiles and diffs metadata documents into an immutable model."""

from loom.metadata.compiler import compile_documents
from loom.metadata.formatting import FormatContext, TextProblem
from loom.metadata.kinds import Compilation, DocumentKind
from loom.metadata.loader import Document, Problem, load_and_compile, load_directory, load_text
from loom.metadata.model import AppModel, Entity, Field
from loom.metadata.registry import (
    DocumentKindError,
    FieldTypeError,
    extend_display,
    register_document_kind,
    register_field_type,
    registered_document_kind,
    registered_field_type,
    remove_display_extension,
    unregister_document_kind,
    unregister_field_type,
)
from loom.metadata.types import FieldType

__all__ = [
    "AppModel",
    "Compilation",
    "Document",
    "DocumentKind",
    "DocumentKindError",
    "Entity",
    "Field",
    "FieldType",
    "FieldTypeError",
    "FormatContext",
    "Problem",
    "TextProblem",
    "compile_documents",
    "extend_display",
    "load_and_compile",
    "load_directory",
    "load_text",
    "register_document_kind",
    "register_field_type",
    "registered_document_kind",
    "registered_field_type",
    "remove_display_extension",
    "unregister_document_kind",
    "unregister_field_type",
]
