"""Request bodies of the OpenAI-compatible endpoints (pydantic models)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_N = 16
MAX_STOP = 4
MAX_TOP_LOGPROBS = 20
MAX_COMPLETION_LOGPROBS = 5


class _Body(BaseModel):
    # Every field of OpenAI's request is either honoured, declared here as one that does not
    # change the answer (user, metadata, store, caching hints), or refused with a 400 naming
    # it: a field this server does not know is never dropped silently.
    model_config = ConfigDict(extra="forbid")


class _Message(BaseModel):
    # Messages fed back from earlier answers carry fields of the answer (refusal, annotations);
    # they do not change what the model reads.
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Body):
    include_usage: bool = Field(default=False, description="Send a last chunk with usage.")


class ContentPart(_Message):
    type: Literal["text"]
    text: str


class CalledFunction(_Message):
    name: str
    arguments: str = Field(description="The arguments as JSON text, as the answer gave them.")


class CalledTool(_Message):
    id: str
    type: Literal["function"] = "function"
    function: CalledFunction


class ChatMessage(_Message):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[CalledTool] | None = Field(
        default=None, description="An assistant turn's calls, fed back from its answer."
    )
    tool_call_id: str | None = Field(default=None, description="A tool turn: the call it answers.")

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class _Sampling(_Body):
    model: str = Field(min_length=1, description="A model id from GET /v1/models.")
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = Field(default=None, description="Up to 4 stop strings.")
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(
        default=0.0, ge=-2.0, le=2.0, description="Subtracted once from every token already used."
    )
    frequency_penalty: float = Field(
        default=0.0,
        ge=-2.0,
        le=2.0,
        description="Subtracted from a token's logit for each time it was already used.",
    )
    logit_bias: dict[str, Annotated[float, Field(ge=-100.0, le=100.0)]] | None = Field(
        default=None, description="Token id (as a string) to a bias added to its logit."
    )
    user: str | None = Field(default=None, description="Accepted; does not change the answer.")

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        return value

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class TextFormat(_Body):
    """``response_format``: plain text (the default)."""

    type: Literal["text"]


class JsonObjectFormat(_Body):
    """``response_format``: one JSON object (any), by constrained decoding."""

    type: Literal["json_object"]


class JsonSchemaSpec(_Body):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    json_schema: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object"}, alias="schema", description="A JSON schema."
    )
    strict: bool | None = Field(
        default=None, description="Accepted; the output always follows the schema here."
    )


class JsonSchemaFormat(_Body):
    """``response_format``: JSON valid under a schema, by constrained decoding."""

    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = Annotated[
    TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")
]


class FunctionDefinition(_Body):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = Field(
        default=None, description="A JSON schema of the arguments (an object)."
    )
    strict: bool | None = Field(
        default=None,
        description="Accepted; with tool_choice 'required' or a named function the arguments "
        "always follow the schema.",
    )


class ToolDefinition(_Body):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(_Body):
    name: str


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: FunctionName


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[ToolDefinition] | None = Field(
        default=None, description="Functions the model may call (its chat template lists them)."
    )
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = Field(
        default=None,
        description="'auto' (the default with tools), 'none', 'required' or one named function; "
        "'required' and a named function force a call whose arguments fit the schema.",
    )
    parallel_tool_calls: bool | None = Field(
        default=None, description="Whether one answer may hold several calls (default true)."
    )
    response_format: ResponseFormat | None = Field(
        default=None, description="text, json_object or json_schema (constrained decoding)."
    )
    modalities: list[Literal["text"]] | None = Field(default=None, description="Only text.")
    metadata: dict[str, str] | None = Field(default=None, description="Accepted, not stored.")
    store: bool | None = Field(default=None, description="Accepted; answers are not stored.")
    service_tier: str | None = Field(default=None, description="Accepted; one tier here.")
    safety_identifier: str | None = Field(default=None, description="Accepted.")
    prompt_cache_key: str | None = Field(default=None, description="Accepted (a cache hint).")
    prompt_cache_retention: str | None = Field(default=None, description="Accepted (a cache hint).")
    prompt_cache_options: dict[str, Any] | None = Field(
        default=None, description="Accepted (a cache hint)."
    )
    logprobs: bool | None = Field(
        default=None, description="Return each output token's log-probability."
    )
    top_logprobs: int | None = Field(
        default=None,
        ge=0,
        le=MAX_TOP_LOGPROBS,
        description="With logprobs: this many of the most likely tokens at each position.",
    )

    @model_validator(mode="after")
    def _top_needs_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs: needs logprobs set to true")
        return self

    @model_validator(mode="after")
    def _tool_choice_names_a_tool(self) -> ChatCompletionRequest:
        names = [tool.function.name for tool in self.tools or []]
        if len(set(names)) != len(names):
            raise ValueError("tools: two functions have the same name")
        choice = self.tool_choice
        if choice not in (None, "none") and not names:
            raise ValueError("tool_choice: is only allowed when tools are specified")
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise ValueError(f"tool_choice: no tool is named {choice.function.name!r}")
        return self

    def tool_mode(self) -> str:
        """``none``, ``auto``, ``required`` or ``named`` (tools given, as tool_choice says)."""
        if not self.tools or self.tool_choice == "none":
            return "none"
        if isinstance(self.tool_choice, NamedToolChoice):
            return "named"
        return self.tool_choice or "auto"

    def logprobs_wanted(self) -> int | None:
        """None, or how many alternatives to return beside each chosen token."""
        return (self.top_logprobs or 0) if self.logprobs else None

    def limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def limit_param(self) -> str:
        return "max_completion_tokens" if self.max_completion_tokens else "max_tokens"


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=16, ge=1)
    echo: bool = False
    best_of: Literal[1] | None = Field(
        default=None, description="Only 1: each choice is its own generation."
    )
    suffix: None = Field(default=None, description="Not supported (insertion).")
    logprobs: int | None = Field(
        default=None,
        ge=0,
        le=MAX_COMPLETION_LOGPROBS,
        description="Return each output token's log-probability and this many alternatives.",
    )

    @model_validator(mode="after")
    def _echo_without_logprobs(self) -> CompletionRequest:
        if self.echo and self.logprobs is not None:
            raise ValueError("echo: log-probabilities of the prompt are not returned; drop echo")
        return self

    def prompts(self) -> list[str | list[int]]:
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if prompt and all(isinstance(p, int) for p in prompt):
            return [[int(p) for p in prompt]]  # type: ignore[arg-type]
        return list(prompt)  # type: ignore[arg-type]


class EmbeddingRequest(_Body):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = Field(default=None, description="Accepted; does not change the answer.")


class SupervisedHyperparameters(_Body):
    n_epochs: int | Literal["auto"] = "auto"
    batch_size: int | Literal["auto"] = "auto"
    learning_rate_multiplier: float | Literal["auto"] = "auto"


class SupervisedMethod(_Body):
    hyperparameters: SupervisedHyperparameters = Field(default_factory=SupervisedHyperparameters)


class LoraSettings(_Body):
    r: int = Field(default=8, ge=1, le=256)
    alpha: int = Field(default=16, ge=1, le=1024)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    merge: bool = Field(
        default=False,
        description="Merge the adapter into a full copy of the weights instead of serving it "
        "on the base model's deployment.",
    )


class FineTuneMethod(_Body):
    type: Literal["supervised", "lora"] = "supervised"
    supervised: SupervisedMethod | None = None
    lora: LoraSettings | None = Field(
        default=None, description="This server's extension: train a LoRA adapter (peft)."
    )


class FineTuningJobRequest(_Body):
    model: str = Field(min_length=1)
    training_file: str = Field(min_length=1)
    validation_file: str | None = None
    suffix: str | None = Field(default=None, max_length=64)
    seed: int | None = None
    hyperparameters: SupervisedHyperparameters | None = None
    method: FineTuneMethod | None = None
    metadata: dict[str, str] | None = Field(default=None, description="Accepted, not stored.")
