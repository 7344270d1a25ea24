"""Settings declared once, as kopf's OperatorSettings and traitlets do.

Each binary (gateway, operator, instance) has one frozen dataclass of settings.
Each of its fields that comes from the environment is declared with `declare()`
(or a shared Setting's `.field()`): its default, environment variable, flag,
help and rule, in that one place. From those declarations come:

- parse(): the environment (and flag values) to the frozen object, with errors
  that name the variable or flag and the rule ("MYSERVICE_PORT must be an
  integer 0..65535, got 70000");
- add_flags(): the argparse flags, whose help shows the variable and the default;
- table(): one row per setting, which the tests hold README.md, docs/ and the
  chart to.

The settings that more than one component reads (the session limits, the
instance port) are declared here once, at the end: the gateway, the operator
and the instance bind them to their own fields.

Values are read as text: blank is unset. Cross-field rules (a TLS key needs a
certificate, ...) are plain functions of each binary, after parse().
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# The key of a dataclass field's metadata that holds its Setting.
_KEY = "myservice.setting"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class SettingsError(ValueError):
    """A setting is missing or has a value that cannot be used; the message names
    the variable (or flag) and the rule."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting: where it comes from, its default, its rule and what it is for.

    `name` (the field) and `kind` (int, float, bool or str, from the field's
    annotation) are filled in by declared(); a shared Setting has neither
    until a binary's dataclass binds it.
    """
    env: str
    help: str
    default: Any = dataclasses.MISSING
    factory: Callable[[], Any] | None = None
    """A default computed when the object is made (e.g. from the CPU count)."""
    default_text: str | None = None
    """How --help and the documentation show the default, where str(default) would not do."""
    flag: str | None = None
    metavar: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False
    """The number must be > 0."""
    choices: tuple[str, ...] = ()
    zero: str | None = None
    """What 0 means (e.g. "off", "no limit"), where it means something."""
    unit: str = ""
    """"seconds": said in the rule and used as the flag's metavar."""
    parse: Callable[[str], Any] | None = None
    """For a value no plain kind describes (JSON, a key): the raw text to the value;
    it raises SettingsError naming the variable."""
    aliases: tuple[str, ...] = ()
    """Earlier names of the variable, still read (with a warning) when it is unset."""
    repeated: bool = False
    """The flag may be given more than once: its values, joined by commas, are read as
    the variable's text would be (a list setting: `--service A --service B`)."""
    name: str = ""
    kind: type = str

    def field(self, **changes: Any) -> Any:
        """A dataclass field declared by this setting (with `changes`, e.g. a flag)."""
        setting = dataclasses.replace(self, **changes)
        metadata = {_KEY: setting}
        if setting.factory is not None:
            return dataclasses.field(default_factory=setting.factory, metadata=metadata)
        if setting.default is dataclasses.MISSING:
            return dataclasses.field(metadata=metadata)
        return dataclasses.field(default=setting.default, metadata=metadata)

    # --- rules -----------------------------------------------------------------

    def rule(self) -> str:
        """What a value must be, as said in errors: "an integer 0..65535"."""
        if self.kind is bool:
            return "true or false"
        if self.choices:
            return " or ".join([", ".join(self.choices[:-1]), self.choices[-1]] if len(self.choices) > 1
                               else list(self.choices))
        if self.kind not in (int, float):
            return "set"
        what = ("a whole number" if self.kind is int else "a number") if self.unit else (
            "an integer" if self.kind is int else "a number")
        if self.unit:
            what += f" of {self.unit}"
        if self.minimum is not None and self.maximum is not None:
            what += f" {_show(self.minimum)}..{_show(self.maximum)}"
        elif self.positive:
            what += " > 0"
        elif self.minimum is not None:
            what += f" >= {_show(self.minimum)}"
        elif self.maximum is not None:
            what += f" <= {_show(self.maximum)}"
        if self.zero:
            what += f" (0 = {self.zero})"
        return what

    def _error(self, source: str, got: str) -> SettingsError:
        return SettingsError(f"{source} must be {self.rule()}, got {got}")

    def convert(self, raw: str, source: str) -> Any:
        """The value of text `raw` read from `source` (a variable or a flag)."""
        if self.parse is not None:
            return self.parse(raw)
        text = raw.strip()
        if self.kind is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise self._error(source, repr(raw))
        if self.kind in (int, float):
            try:
                value = self.kind(text)
            except ValueError:
                raise self._error(source, repr(raw)) from None
            return self.check(value, source, shown=repr(raw))
        if self.choices and text not in self.choices:
            raise self._error(source, repr(raw))
        return text

    def check(self, value: Any, source: str, *, shown: str | None = None) -> Any:
        """`value` if it keeps the rule; `shown`: the text it was read from, for the error."""
        if self.kind in (int, float) and not isinstance(value, bool) and isinstance(value, (int, float)):
            if (not math.isfinite(value)
                    or (self.minimum is not None and value < self.minimum)
                    or (self.maximum is not None and value > self.maximum)
                    or (self.positive and value <= 0)):
                raise self._error(source, shown or _show(value))
        elif self.choices and value not in self.choices:
            raise self._error(source, repr(value))
        return value

    # --- where the value comes from -----------------------------------------------

    def read(self, env: Mapping[str, str]) -> tuple[str, str] | None:
        """(variable, text) of the first of env, aliases that is set (not blank)."""
        raw = env.get(self.env, "")
        if raw.strip():
            for old in self.aliases:
                if env.get(old, "").strip():
                    log.warning("%s is ignored: %s is set (its new name)", old, self.env)
            return self.env, raw
        for old in self.aliases:
            raw = env.get(old, "")
            if raw.strip():
                log.warning("%s is deprecated: read as %s, rename it", old, self.env)
                return old, raw
        return None

    def shown_default(self) -> str:
        if self.default_text is not None:
            return self.default_text
        if self.default is dataclasses.MISSING or self.default is None:
            return "unset"
        if self.kind is bool:
            return "on" if self.default else "off"
        if self.default == "":
            return '""'
        if isinstance(self.default, float):
            return _show(self.default)
        return str(self.default)


def declare(default: Any = dataclasses.MISSING, *, env: str, help: str, **rest: Any) -> Any:
    """A dataclass field read from `env`: see Setting for the rest."""
    return Setting(env=env, help=help, default=default).field(**rest)


def _show(number: float) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)


def _kind(annotation: Any) -> type:
    """int, float, bool or str from a field's type (`str | None` is str); else object."""
    if annotation in (int, float, bool, str):
        return typing.cast(type, annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(args) == 1 and args[0] in (int, float, bool, str):
        return typing.cast(type, args[0])
    return object


def declared(cls: type) -> list[Setting]:
    """The settings of a settings dataclass, in field order, bound to their fields."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        setting = field.metadata.get(_KEY)
        if setting is not None:
            found.append(dataclasses.replace(setting, name=field.name, kind=_kind(hints[field.name])))
    return found


def parse(cls: type[T], env: Mapping[str, str], *, flags: Mapping[str, Any] | None = None,
          defaults: Mapping[str, Any] | None = None, **values: Any) -> T:
    """An instance of `cls` from `env`.

    For each declared field, first of: its flag's value in `flags` (by field name,
    None = not given; text is converted, anything else checked), its variable (or
    an alias) in `env`, `defaults` (a default known only at run time), the declared
    default. `values` set fields that are not read from the environment.
    """
    flags = flags or {}
    found: dict[str, Any] = {}
    for setting in declared(cls):
        given = flags.get(setting.name)
        source = setting.flag or setting.name
        if isinstance(given, list):  # a repeated flag
            given = ",".join(given)
        if given is not None:
            found[setting.name] = (setting.convert(given, source) if isinstance(given, str)
                                   else setting.check(given, source))
            continue
        read = setting.read(env)
        if read is not None:
            found[setting.name] = setting.convert(read[1], read[0])
        elif defaults and setting.name in defaults:
            found[setting.name] = defaults[setting.name]
        elif setting.factory is None and setting.default is dataclasses.MISSING:
            raise SettingsError(f"{setting.env} must be set")
        elif setting.kind is float and isinstance(setting.default, int):
            found[setting.name] = float(setting.default)  # a shared whole-seconds default
    found.update(values)
    return cls(**found)


def add_flags(parser: argparse.ArgumentParser, cls: type, *, skip: Iterable[str] = (),
              shown_defaults: Mapping[str, str] | None = None) -> None:
    """One flag per declared setting that has one (except the fields in `skip`): its value,
    as text, lands in the namespace under the field's name (None: not given). The help
    ends with the variable and the default ("env MYSERVICE_PORT, default 10000")."""
    skip = set(skip)
    for setting in declared(cls):
        if setting.flag is None or setting.name in skip:
            continue
        shown = (shown_defaults or {}).get(setting.name) or setting.shown_default()
        if setting.zero and shown == "0":
            shown = f"0 = {setting.zero}"
        elif setting.zero:
            shown += f"; 0 = {setting.zero}"
        text = f"{setting.help} (env {setting.env}, default {shown})".replace("%", "%%")
        if setting.kind is bool:
            parser.add_argument(setting.flag, dest=setting.name, action="store_true", default=None, help=text)
        elif setting.repeated:
            parser.add_argument(setting.flag, dest=setting.name, action="append", default=None, help=text,
                                metavar=setting.metavar)
        else:
            parser.add_argument(setting.flag, dest=setting.name, default=None,
                                choices=setting.choices or None, help=text,
                                metavar=setting.metavar or (setting.unit.upper() if setting.unit else None))


def flag_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The values of add_flags()'s flags, by field name, for parse(flags=...)."""
    return {s.name: getattr(args, s.name, None) for s in declared(cls) if s.flag is not None}


class Row(NamedTuple):
    env: str
    flag: str | None
    default: str
    help: str


def table(cls: type) -> list[Row]:
    """One row per declared setting: what the documentation must say."""
    return [Row(s.env, s.flag, s.shown_default(), s.help) for s in declared(cls)]


# --- settings more than one component reads ----------------------------------------
#
# Each is bound by every binary that reads it to a field of its own (the type comes from
# that field: the operator's are whole seconds, the gateway's and instance's any number),
# with its own help and, where it has one, flag.

SESSION_IDLE_TIMEOUT = Setting(
    env="MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS", default=900, minimum=0, zero="off", unit="seconds",
    help="an instance with no call for this long ends (IdleTimeout); an open stream is a call")
SESSION_MAX_LIFETIME = Setting(
    env="MYSERVICE_SESSION_MAX_LIFETIME_SECONDS", default=86400, minimum=0, zero="off", unit="seconds",
    help="an instance ends this long after it started, calls or not (LifetimeExceeded)")
SESSION_READY_TIMEOUT = Setting(
    env="MYSERVICE_SESSION_READY_TIMEOUT_SECONDS", default=120, positive=True, unit="seconds",
    # The gateway's and the operator's names before they were one.
    aliases=("MYSERVICE_SESSION_READY_TIMEOUT", "MYSERVICE_READY_TIMEOUT_SECONDS"),
    help="kubernetes: a session's instance not Ready this long after it was asked for has failed: "
         "the operator fails it (Pending: CapacityExceeded, Starting: ReadyTimeout) and a call "
         "waits for it no longer")
INSTANCE_PORT = Setting(
    env="MYSERVICE_INSTANCE_PORT", default=50051, minimum=0, maximum=65535,
    help="the instance's gRPC port")
