"""Typed payloads: a job's kwargs stored as JSON and given back to its function as the
types it declares.

A function annotated with Pydantic models, dataclasses, ``datetime``, ``UUID``,
``Decimal``, enums, ``Literal``, ``tuple[...]`` and the like gets those types back in the
worker, when Pydantic is installed (``pip install 'chancy[pydantic]'``)::

    class Receipt(BaseModel):
        order_id: int
        total: Decimal
        sent_at: datetime

    def send_receipt(receipt: Receipt, *, retries_left: int = 3) -> None: ...

    Job.from_func(send_receipt, kwargs={"receipt": Receipt(...)})

- :func:`payload_of` reads a function's signature once (the result is cached per
  function): the parameters annotated with a type that JSON does not carry as it is are
  its *typed* parameters, validated by one ``TypeAdapter`` built for the function. A
  parameter without an annotation, annotated with ``int``, ``float``, ``str``, ``bool``,
  ``None``, ``Any``, ``list``/``dict`` of those or an ``Optional``/union of them, or with
  a type Pydantic cannot validate, is a plain JSON value, as before; a function with no
  typed parameter has no payload at all, and its jobs run exactly as they always did.
- At ``Job.from_func`` (:meth:`Payload.stored`), the typed kwargs are validated and
  stored in their JSON form: only the keys given, so the defaults of the function at run
  time apply. A value that does not validate raises
  :class:`~chancy.errors.InvalidKwargsError` naming its field
  (``receipt.total: Input should be a valid decimal``), and nothing is stored.
- In the worker (:meth:`Payload.arguments`), the stored JSON is validated back into the
  annotated types before the call. Stored kwargs that no longer validate (the function
  changed incompatibly since the job was pushed) raise
  :class:`~chancy.errors.IncompatiblePayloadError`, which fails the job without a retry.
  A parameter, or a model field, added with a default is compatible: older jobs run.
- Secrets: Pydantic writes ``SecretStr`` and ``SecretBytes`` values as ``**********`` in
  JSON; a job needs the real value to run, so it is stored, and the paths of the secret
  values are recorded in the job's meta under :data:`SECRETS_META_KEY`.
  :func:`masked` hides the values at those paths; the repr of a job and ``chancy job
  show`` show kwargs through it, so neither needs the job's function to know what is
  secret.

Without Pydantic, kwargs are plain JSON values, as they always were, and a value of a
typed parameter that is not JSON fails at ``Job.from_func`` with a hint to install it.
Nothing here imports Pydantic until a function with a typed parameter is met.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from chancy.errors import IncompatiblePayloadError, InvalidKwargsError

__all__ = [
    "MASK",
    "SECRETS_META_KEY",
    "Payload",
    "masked",
    "payload_of",
]

SECRETS_META_KEY = "chancy.secrets"
"""The key of a job's meta that lists the paths of its secret kwargs, each a list of keys
and list indexes (``[["receipt", "card", "number"]]``)."""
MASK = "**********"
"""What a secret value shows as."""
_ERRORS_SHOWN = 5
_PLAIN_TYPES: frozenset[Any] = frozenset(
    {int, float, str, bool, type(None), None, Any, object, list, dict}
)
_UNIONS = (typing.Union, types.UnionType)
Path: TypeAlias = list[str | int]


@dataclasses.dataclass(frozen=True, slots=True)
class Payload:
    """How the kwargs of one function (``function``: its module and ``qualname``) are
    stored and given back: its ``typed``
    parameters (name to annotation), validated by ``adapter`` (None without Pydantic:
    then they are plain JSON values too); ``accepted``: the names it takes by keyword
    (None when it takes ``**kwargs``)."""

    function: str
    qualname: str
    typed: Mapping[str, Any]
    accepted: frozenset[str] | None
    adapter: Any = None

    def stored(self, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], list[Path]]:
        """The kwargs to store for ``kwargs`` given to ``Job.from_func``, and the paths of
        the secret values among them; :class:`InvalidKwargsError` for a value that does
        not fit its parameter's type."""
        given = {key: value for key, value in kwargs.items() if key in self.typed}
        if not given:
            return dict(kwargs), []
        if self.adapter is None:
            self._check_json_without_pydantic(given)
            return dict(kwargs), []
        import pydantic
        import pydantic_core

        try:
            validated = self.adapter.validate_python(given)
            form = self.adapter.dump_python(validated, mode="json")
            secrets: list[Path] = []
            form = _revealed(form, self.adapter.dump_python(validated), [], secrets)
        except pydantic.ValidationError as exc:
            raise InvalidKwargsError(
                f"{self.qualname}() cannot take these kwargs: {_problems(exc)}"
            ) from None
        except pydantic_core.PydanticSerializationError as exc:
            raise InvalidKwargsError(
                f"{self.qualname}()'s kwargs cannot be written as JSON: {exc}"
            ) from None
        self._check_round_trip(form)
        return {**kwargs, **form}, secrets

    def arguments(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments of the call, from the kwargs a job stored: its typed
        values validated back into their types. :class:`IncompatiblePayloadError` when
        they no longer fit (the function changed since the job was pushed)."""
        arguments = dict(stored)
        if self.adapter is None:
            return arguments
        if self.accepted is not None:
            unknown = sorted(key for key in arguments if key not in self.accepted)
            if unknown:
                raise self._incompatible(f"it has no parameter {unknown[0]!r}")
        given = {key: arguments[key] for key in self.typed if key in arguments}
        import pydantic

        try:
            arguments.update(self.adapter.validate_json(json.dumps(given)))
        except pydantic.ValidationError as exc:
            raise self._incompatible(_problems(exc)) from None
        return arguments

    def _incompatible(self, problems: str) -> IncompatiblePayloadError:
        return IncompatiblePayloadError(
            f"the job's stored kwargs do not fit {self.function}() ({problems}): the payload "
            "predates the function's current signature, so the job is not retried. Push it "
            "again with kwargs that fit; to keep stored jobs running, give new parameters "
            "and new model fields a default"
        )

    def _check_json_without_pydantic(self, given: Mapping[str, Any]) -> None:
        for key, value in given.items():
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                shown = _annotation_name(self.typed[key])
                raise InvalidKwargsError(
                    f"kwargs[{key!r}] cannot be stored as JSON ({exc}); pass its JSON form "
                    f"(str, int, float, bool, None, lists and dicts of them), or install "
                    f"Pydantic (pip install 'chancy[pydantic]') so that {self.qualname}()'s "
                    f"annotation {key}: {shown} stores it and gives it back"
                ) from exc

    def _check_round_trip(self, form: Mapping[str, Any]) -> None:
        """What is stored must validate again in the worker: refuse it now otherwise."""
        import pydantic

        try:
            self.adapter.validate_json(json.dumps(form, allow_nan=False))
        except (pydantic.ValidationError, ValueError) as exc:
            why = _problems(exc) if isinstance(exc, pydantic.ValidationError) else str(exc)
            raise InvalidKwargsError(
                f"{self.qualname}()'s kwargs do not come back from their JSON form ({why}); "
                "a worker could not run the job. Use types whose JSON form validates again"
            ) from None


@functools.lru_cache(maxsize=4096)
def payload_of(fn: Callable[..., Any]) -> Payload | None:
    """The :class:`Payload` of ``fn``, or None when it has no typed parameter (its kwargs
    are plain JSON values). Read once per function; never raises."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    hints = _hints(fn)
    typed: dict[str, tuple[Any, bool]] = {}
    accepted: set[str] | None = set()
    for name, parameter in signature.parameters.items():
        if parameter.kind is parameter.VAR_KEYWORD:
            accepted = None
        if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            continue
        if accepted is not None:
            accepted.add(name)
        annotation = hints.get(name, parameter.annotation)
        if not _plain_json(annotation) and not _chancy_type(annotation):
            typed[name] = (annotation, parameter.default is parameter.empty)
    if not typed:
        return None
    qualname = str(getattr(fn, "__qualname__", "?"))
    adapter, typed = _adapter(getattr(fn, "__name__", "kwargs"), typed)
    if not typed:
        return None
    return Payload(
        function=f"{getattr(fn, '__module__', '?')}.{qualname}",
        qualname=qualname,
        typed={key: annotation for key, (annotation, _required) in typed.items()},
        accepted=None if accepted is None else frozenset(accepted),
        adapter=adapter,
    )


def masked(kwargs: Mapping[str, Any], meta: object) -> Mapping[str, Any]:
    """``kwargs`` with the values at the secret paths ``meta`` records shown as
    :data:`MASK`; ``kwargs`` itself when it records none. Never raises: paths that do
    not fit the kwargs (a row written by hand) are passed over."""
    paths = meta.get(SECRETS_META_KEY) if isinstance(meta, Mapping) else None
    if not paths or not isinstance(paths, list | tuple) or not isinstance(kwargs, Mapping):
        return kwargs
    copy: dict[str, Any] = _thawed(kwargs)
    for path in paths:
        if isinstance(path, list | tuple) and path:
            _mask_at(copy, path)
    return copy


def _hints(fn: Callable[..., Any]) -> Mapping[str, Any]:
    """``fn``'s annotations, evaluated; {} when one cannot be (a name imported only for
    type checking): the raw annotations are used, and one left a string is plain JSON."""
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:
        return {}


def _plain_json(annotation: Any) -> bool:
    """Whether a parameter annotated so takes JSON values as they are: no annotation,
    ``int``, ``float``, ``str``, ``bool``, ``None``, ``Any``, ``object``, ``list`` and
    ``dict`` (of str keys) of those, and unions of them. A string is an annotation that
    could not be evaluated: nothing can validate it."""
    if annotation is inspect.Parameter.empty or isinstance(annotation, str):
        return True
    try:
        if annotation in _PLAIN_TYPES:
            return True
    except TypeError:  # unhashable: not one of them
        return False
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list or origin in _UNIONS:
        return all(_plain_json(argument) for argument in arguments)
    if origin is dict:
        return not arguments or (arguments[0] is str and _plain_json(arguments[1]))
    return False


def _chancy_type(annotation: Any) -> bool:
    """Whether ``annotation`` is one of chancy's own types (``QueuedJob``): the worker
    passes such a parameter itself; it is never in kwargs."""
    module = getattr(annotation, "__module__", None)
    return isinstance(annotation, type) and isinstance(module, str) and module.startswith("chancy")


def _adapter(
    name: str, typed: dict[str, tuple[Any, bool]]
) -> tuple[Any, dict[str, tuple[Any, bool]]]:
    """The TypeAdapter of the ``typed`` parameters (a TypedDict of them: those without a
    default required), and the parameters it validates: those Pydantic can build a
    validator for. (None, ``typed``) without Pydantic."""
    try:
        import pydantic
    except ImportError:
        return None, typed
    try:
        return pydantic.TypeAdapter(_typed_dict(name, typed)), typed
    except Exception:
        pass
    usable = {key: value for key, value in typed.items() if _validatable(value[0])}
    if not usable:
        return None, usable
    try:
        return pydantic.TypeAdapter(_typed_dict(name, usable)), usable
    except Exception:
        return None, {}


def _typed_dict(name: str, typed: Mapping[str, tuple[Any, bool]]) -> Any:
    from typing import NotRequired, Required

    from typing_extensions import TypedDict  # Pydantic's choice before Python 3.12

    fields = {
        key: Required[annotation] if required else NotRequired[annotation]
        for key, (annotation, required) in typed.items()
    }
    return TypedDict(name, fields)  # type: ignore[operator]


def _validatable(annotation: Any) -> bool:
    import pydantic

    try:
        pydantic.TypeAdapter(annotation)
    except Exception:
        return False
    return True


def _revealed(form: Any, python: Any, path: Path, secrets: list[Path]) -> Any:
    """``form`` (a JSON dump) with each secret the Python dump ``python`` holds at the
    same place put back as its real value, its path added to ``secrets``. The two dumps
    have the same shape: containers in the same order."""
    secret = _secret_types()
    if isinstance(python, secret):
        secrets.append(path)
        return _secret_value(typing.cast(Any, python).get_secret_value(), path)
    if isinstance(python, dict) and isinstance(form, dict):
        return {
            key: _revealed(value, original, [*path, key], secrets)
            for (key, value), original in zip(form.items(), python.values(), strict=True)
        }
    if isinstance(python, list | tuple) and isinstance(form, list):
        return [
            _revealed(value, original, [*path, index], secrets)
            for index, (value, original) in enumerate(zip(form, python, strict=True))
        ]
    if isinstance(python, set | frozenset) and any(isinstance(item, secret) for item in python):
        raise InvalidKwargsError(
            f"{_shown_path(path)} is a set of secrets, which cannot be stored in order; "
            "use a list or a tuple"
        )
    return form


@functools.cache
def _secret_types() -> tuple[type, ...]:
    """Pydantic's secret types: ``SecretStr``, ``SecretBytes`` and (from Pydantic 2.7)
    ``Secret[...]``."""
    import pydantic

    names = ("SecretStr", "SecretBytes", "Secret")
    return tuple(kind for name in names if isinstance(kind := getattr(pydantic, name, None), type))


def _secret_value(value: Any, path: Path) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidKwargsError(
                f"{_shown_path(path)}: the secret bytes are not UTF-8, so they cannot be "
                "stored as JSON text; store them as base64 text in a SecretStr"
            ) from None
    import pydantic_core

    return pydantic_core.to_jsonable_python(value)


def _problems(exc: Any) -> str:
    """``path: message`` for each error of a Pydantic ``ValidationError`` (never the
    input: it may be a secret), at most a few."""
    errors = exc.errors(include_url=False, include_input=False)
    shown = [f"{_shown_path(list(error['loc']))}: {error['msg']}" for error in errors]
    more = len(shown) - _ERRORS_SHOWN
    text = "; ".join(shown[:_ERRORS_SHOWN])
    return text if more <= 0 else f"{text}; and {more} more"


def _shown_path(path: Path) -> str:
    """``receipt.items[0].price``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "kwargs"


def _annotation_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__qualname__
    return str(annotation).replace("typing.", "")


def _thawed(value: Any) -> Any:
    """A copy of ``value`` whose mappings are dicts and sequences lists, to mask in."""
    if isinstance(value, Mapping):
        return {key: _thawed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_thawed(item) for item in value]
    return value


def _mask_at(value: Any, path: list[Any] | tuple[Any, ...]) -> None:
    *parents, last = path
    for part in parents:
        value = _child(value, part)
        if value is None:
            return
    in_dict = isinstance(value, dict) and isinstance(last, str) and last in value
    if in_dict or (isinstance(value, list) and _index(value, last)):
        value[last] = MASK


def _child(value: Any, part: Any) -> Any:
    if isinstance(value, dict) and isinstance(part, str):
        return value.get(part)
    if isinstance(value, list) and _index(value, part):
        return value[part]
    return None


def _index(value: list[Any], part: Any) -> bool:
    return isinstance(part, int) and not isinstance(part, bool) and 0 <= part < len(value)
