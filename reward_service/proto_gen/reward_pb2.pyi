from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Completion(_message.Message):
    __slots__ = ("id", "text", "ground_truth")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    GROUND_TRUTH_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    ground_truth: str
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., ground_truth: _Optional[str] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("request_id", "completions", "return_sentences", "timeout_ms", "weights")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    RETURN_SENTENCES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    completions: _containers.RepeatedCompositeFieldContainer[Completion]
    return_sentences: bool
    timeout_ms: int
    weights: RewardWeights
    def __init__(self, request_id: _Optional[str] = ..., completions: _Optional[_Iterable[_Union[Completion, _Mapping]]] = ..., return_sentences: _Optional[bool] = ..., timeout_ms: _Optional[int] = ..., weights: _Optional[_Union[RewardWeights, _Mapping]] = ...) -> None: ...

class RewardWeights(_message.Message):
    __slots__ = ("explanation", "format", "answer")
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    explanation: float
    format: float
    answer: float
    def __init__(self, explanation: _Optional[float] = ..., format: _Optional[float] = ..., answer: _Optional[float] = ...) -> None: ...

class SentenceLabels(_message.Message):
    __slots__ = ("text", "labels")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    text: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, text: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class CompletionScore(_message.Message):
    __slots__ = ("id", "explanation", "format", "answer", "total", "predicted", "num_sentences", "num_neutral", "num_matching", "sentences")
    ID_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_FIELD_NUMBER: _ClassVar[int]
    NUM_SENTENCES_FIELD_NUMBER: _ClassVar[int]
    NUM_NEUTRAL_FIELD_NUMBER: _ClassVar[int]
    NUM_MATCHING_FIELD_NUMBER: _ClassVar[int]
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    id: str
    explanation: float
    format: float
    answer: float
    total: float
    predicted: str
    num_sentences: int
    num_neutral: int
    num_matching: int
    sentences: _containers.RepeatedCompositeFieldContainer[SentenceLabels]
    def __init__(self, id: _Optional[str] = ..., explanation: _Optional[float] = ..., format: _Optional[float] = ..., answer: _Optional[float] = ..., total: _Optional[float] = ..., predicted: _Optional[str] = ..., num_sentences: _Optional[int] = ..., num_neutral: _Optional[int] = ..., num_matching: _Optional[int] = ..., sentences: _Optional[_Iterable[_Union[SentenceLabels, _Mapping]]] = ...) -> None: ...

class RequestError(_message.Message):
    __slots__ = ("code", "message", "retry_after_ms")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    retry_after_ms: int
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., retry_after_ms: _Optional[int] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("request_id", "model_version", "scores", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model_version: str
    scores: _containers.RepeatedCompositeFieldContainer[CompletionScore]
    error: RequestError
    def __init__(self, request_id: _Optional[str] = ..., model_version: _Optional[str] = ..., scores: _Optional[_Iterable[_Union[CompletionScore, _Mapping]]] = ..., error: _Optional[_Union[RequestError, _Mapping]] = ...) -> None: ...
