"""The request and answer bodies of `mjave serve` (pydantic models; they make its OpenAPI
document). Kept apart from the routes so the shapes a client sees are read in one place."""

import json
from typing import Annotated, Any, Literal, Optional, Union

from typing_extensions import NotRequired, TypedDict

from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, create_model,
                      TypeAdapter, WithJsonSchema, field_validator, model_serializer,
                      model_validator)

from mjave.data.errors import DataError
from mjave.data.rows import check_text
from mjave.serving.errors import ErrorOut, ValidationErrorOut


class ExtractItem(BaseModel):
    """One product: its text and optionally its image (inline base64 or a path under the root)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"id": "sku-1", "text": "red shirt with blue shoes, slim fit", "category": "shirts"}]})

    id: Optional[Union[Annotated[str, Field(max_length=256)], int]] = Field(
        None, description="echoed back in the result")
    text: str = Field(description="the product text (title): not empty, at most max_text_chars "
                      "characters")
    category: Optional[Annotated[str, Field(max_length=1000)]] = Field(
        None, description="the product's category: a model trained with "
        "`model.restrict_to_category` decodes only the attributes seen with it in training, as "
        "`mjave predict` and `mjave evaluate` do (an unknown category restricts nothing)")
    image_base64: Optional[str] = Field(
        None, description="the image file (JPEG, PNG, WEBP, GIF or BMP), base64-encoded; a "
        "`data:image/...;base64,` prefix is accepted")
    image_path: Optional[Annotated[str, Field(max_length=4096)]] = Field(
        None, description="an image file relative to the server's --image-root (refused when "
        "the server has none)")
    explain: bool = Field(False, description="also return the token offsets and the visual "
                          "gates (`explain` in the result)")

    @field_validator("text")
    @classmethod
    def _real_text(cls, v: str) -> str:
        """Empty texts have nothing to tag, and lone surrogates ("\\ud800") are valid JSON but
        no text (the tokenizer would fail): both are refused before they reach the model, by
        the row check every front end runs (`mjave.data.rows.check_text`; the length is
        checked against `max_text_chars` later, as a 413)."""
        try:
            return check_text(v, max_chars=None)
        except DataError as e:
            raise ValueError(e.message) from None

    @model_validator(mode="after")
    def _one_image(self) -> "ExtractItem":
        if self.image_base64 is not None and self.image_path is not None:
            raise ValueError("give image_base64 or image_path, not both")
        return self


class ExtractBatch(BaseModel):
    """Several items in one request (at most max_request_items); results keep their order."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"items": [{"id": 1, "text": "red shirt, slim fit"}, {"id": 2, "text": "blue shoes"}]}]})

    items: list[ExtractItem]
    explain: bool = Field(False, description="explain every item (as `explain` on each)")


def _request_kind(v: Any) -> str:
    """Pick the branch by the `items` key, so errors describe one shape, not both."""
    if isinstance(v, ExtractBatch) or (isinstance(v, dict) and "items" in v):
        return "batch"
    return "single"


def request_type(max_items: int) -> Any:
    """The body type of /v1/extract: an item or a batch of at most `max_items`. The bound is in
    the schema so that pydantic stops at the length check: validating 2 million tiny items
    before counting them would take half a minute."""
    batch = create_model("ExtractBatch", __base__=ExtractBatch,
                         items=(list[ExtractItem], Field(max_length=max_items)))
    return Annotated[Union[Annotated[ExtractItem, Tag("single")], Annotated[batch, Tag("batch")]],
                     Discriminator(_request_kind)]


class AttributeOut(BaseModel):
    name: str
    score: float = Field(description="predicted probability of the attribute")


OFFSETS = ("begin", "end")


class ValueJSON(TypedDict):
    """A value as the service writes it (`ValueOut`'s serialised form)."""

    attribute: str
    value: Annotated[str, Field(description="text[begin:end], or a value named without a span")]
    begin: Annotated[Optional[int], Field(
        description="character offset in the text (inclusive); null for a value named "
                    "without a span (see `source`)")]
    end: Annotated[Optional[int], Field(
        description="character offset in the text (exclusive); null for a value named "
                    "without a span")]
    score: Annotated[float, Field(
        description="mean probability of the tags of the span, or the probability of a value "
                    "named without a span")]
    source: NotRequired[Annotated[Literal["image", "text"], Field(
        description="only on a value named without a span (a model trained with "
                    "model.implicit_values): what it was read from, the photo or the text")]]


class ValueOut(BaseModel):
    attribute: str
    value: str
    begin: int | None
    end: int | None
    score: float
    source: Literal["image", "text"] | None = None

    @model_serializer(mode="wrap")
    def _null_offsets(self, handler: Any
                      ) -> Annotated[dict[str, Any],
                                     WithJsonSchema(TypeAdapter(ValueJSON).json_schema())]:
        """`begin` and `end` stay in the JSON as null (the service leaves other nulls out):
        a client reads every value alike, as the Python API returns it."""
        out = handler(self)
        return {k: out.get(k) for k in type(self).model_fields if k in out or k in OFFSETS}


class TokenOut(BaseModel):
    text: str = Field(description="text[begin:end]: one tokenizer piece")
    begin: int = Field(description="character offset in the text (inclusive)")
    end: int = Field(description="character offset in the text (exclusive)")
    global_gate: Optional[float] = Field(description="the global visual gate g^G at this piece "
                                         "(Eq. 6), averaged over the attention size; null when "
                                         "the model has no global gate (text-only models)")


class ExplainOut(BaseModel):
    """Why the model extracted what it did (the paper's Figure 5), for one item."""

    tokens: list[TokenOut] = Field(description="the pieces of the text in order ([CLS]/[SEP] "
                                   "left out)")
    regional_gate: Optional[list[list[float]]] = Field(
        description="the regional visual gate g^R (Eq. 10) per image region, averaged over the "
        "attention size, as rows of a grid (7x7); null without an image or for text-only models")
    image_attention: Optional[list[list[float]]] = Field(
        description="the attention of the pieces over the image regions (Eq. 3-4), averaged over "
        "the pieces, same grid; null without an image or for text-only models")
    grid: Optional[list[int]] = Field(description="[rows, columns] of the grids, or null")
    attribute_probs: dict[str, float] = Field(description="the probability of every attribute")


class ExtractResult(BaseModel):
    id: Optional[Union[str, int]] = None
    attributes: list[AttributeOut] = Field(description="predicted attributes, by score")
    values: list[ValueOut] = Field(description="extracted values, in text order")
    warning: Optional[str] = Field(None, description="e.g. predicted without the image")
    explain: Optional[ExplainOut] = Field(None, description="present when the request asked "
                                          "for it (`explain: true`) and the model can explain "
                                          "(mjave's extractor can)")

    def as_json(self) -> dict[str, Any]:
        """Top-level None fields left out; inside `explain` the nulls are kept (they mean "this
        model has no such gate"). Serialised by pydantic, so a NaN score becomes null as with a
        response model."""
        out = json.loads(self.model_dump_json(exclude_none=True, exclude={"explain"}))
        if self.explain is not None:
            out["explain"] = json.loads(self.explain.model_dump_json())
        return out


class ExtractBatchResult(BaseModel):
    items: list[ExtractResult]


class ModelOut(BaseModel):
    version: Union[str, dict[str, Any]]
    attributes: list[str]
    tags: list[str]
    info: dict[str, Any]
    limits: dict[str, Any]


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str
    batcher: dict[str, Any]


EXTRACT_ERRORS = {
    400: {"model": ErrorOut, "description": "bad base64, undecodable image, or an image_path "
          "the server may not read"},
    413: {"model": ErrorOut, "description": "body, item count, text or image over a limit"},
    422: {"model": ValidationErrorOut, "description": "the body does not fit the schema"},
    500: {"model": ErrorOut, "description": "server fault (logged)"},
    503: {"model": ErrorOut, "description": "not ready, shutting down or overloaded"},
    504: {"model": ErrorOut, "description": "the request's deadline (request_timeout_s) passed; "
          "its items not yet computed were dropped"}}
"""The error answers of `POST /v1/extract`, for its OpenAPI document."""


__all__ = ["AttributeOut", "EXTRACT_ERRORS", "ExplainOut", "ExtractBatch", "ExtractBatchResult",
           "ExtractItem", "ExtractResult", "HealthOut", "ModelOut", "ReadyOut", "TokenOut",
           "ValueOut", "request_type"]
