"""Import conditions: a Python-like expression over the message's fields, in a sandbox that holds.

    doc.subject == "Some important email"
    "invoice" in doc.subject.lower() and doc.sender.endswith("@example.com")

Evaluated with simpleeval, narrowed further: only the names ``doc`` and a few functions; attribute
access only to the message's fields and a short list of string and date methods (so no dunders,
no ``format``, no ``replace`` that could build a huge string); no lambdas, comprehensions or
``*`` unpacking; a bounded expression size, number of steps and time. Each step is bounded too,
before it runs: a power, a product, a shift, a sum, ``%`` formatting and f-string format specs are
refused when what they would build (a number of more than MAX_INT_BITS bits, a value of more than
MAX_VALUE_SIZE characters or items, a width or precision over MAX_FORMAT_WIDTH) is too big, so no
single step can take long or allocate much. A condition is checked when the account is saved
(syntax, unknown names) and evaluated at pull time, where an error is a ConditionError: the pull
keeps the message as failed, with its raw bytes and the reason, and goes on.
"""

from __future__ import annotations

import ast
import functools
import itertools
import re
import time
from dataclasses import dataclass, fields
from datetime import date, datetime

import simpleeval

from .errors import ConditionError
from .parsing import IncomingMessage

MAX_EXPRESSION_LENGTH = 2000
MAX_STEPS = 5000
MAX_SECONDS = 0.25
#: a number may have this many bits (about 1,200 digits)
MAX_INT_BITS = 4096
#: a value built may hold this many characters, items (nested ones counted too) or bytes
MAX_VALUE_SIZE = 1_000_000
#: the largest width or precision in a ``%`` or f-string format
MAX_FORMAT_WIDTH = 1000
#: long bodies are cut to this many characters before a condition sees them
MAX_TEXT = 200_000

STRING_METHODS = frozenset(
	{
		"lower",
		"upper",
		"casefold",
		"strip",
		"lstrip",
		"rstrip",
		"startswith",
		"endswith",
		"find",
		"count",
		"split",
		"title",
		"isdigit",
		"isalpha",
		"isspace",
	}
)
DATE_ATTRIBUTES = frozenset({"year", "month", "day", "hour", "minute", "weekday", "isoweekday", "date"})
FUNCTIONS = {
	"len": len,
	"str": str,
	"int": int,
	"float": float,
	"any": any,
	"all": all,
	"min": min,
	"max": max,
}
_FORBIDDEN_NODES = (
	ast.ListComp,
	ast.SetComp,
	ast.DictComp,
	ast.GeneratorExp,
	ast.Lambda,
	ast.NamedExpr,
	ast.Starred,
)


@dataclass(frozen=True)
class MessageFields:
	"""What a condition sees as ``doc``: the message's fields, named as on a Communication."""

	subject: str
	sender: str
	sender_full_name: str
	recipients: str
	to: str
	cc: str
	text_content: str
	content: str
	has_attachment: bool
	attachments: tuple[str, ...]
	date: datetime
	message_id: str
	in_reply_to: str
	folder: str
	auto_submitted: str

	@classmethod
	def of(cls, message: IncomingMessage, folder: str = "") -> MessageFields:
		def joined(addresses) -> str:
			return ", ".join(a.email for a in addresses)

		text = message.text_content[:MAX_TEXT]
		return cls(
			subject=message.subject,
			sender=message.sender.email if message.sender else "",
			sender_full_name=message.sender.name if message.sender else "",
			recipients=joined((*message.to, *message.cc)),
			to=joined(message.to),
			cc=joined(message.cc),
			text_content=text,
			content=(message.html_content or message.text_content)[:MAX_TEXT],
			has_attachment=bool(message.attachments),
			attachments=tuple(a.filename for a in message.attachments),
			date=message.date,
			message_id=message.message_id,
			in_reply_to=" ".join(message.in_reply_to),
			folder=folder,
			auto_submitted=message.auto_submitted or "",
		)


FIELD_NAMES = frozenset(f.name for f in fields(MessageFields))
_ALLOWED_ATTRS = {
	MessageFields: FIELD_NAMES,
	str: STRING_METHODS,
	datetime: DATE_ATTRIBUTES,
	date: DATE_ATTRIBUTES - {"hour", "minute", "date"},
}


# -- bounded operations: each checks the size of what it would build before building it ------


def _too_big(what: str) -> ConditionError:
	return ConditionError(f"the condition builds {what}, more than a condition may; make it simpler")


def _size(value, limit: int = MAX_VALUE_SIZE) -> int:
	"""How big a value is: characters of a text, bytes of a number, items of a collection (and
	what they hold); counting stops past ``limit``."""
	if isinstance(value, (str, bytes)):
		return len(value)
	if isinstance(value, int):
		return value.bit_length() // 8 + 1
	if isinstance(value, (list, tuple, set, frozenset, dict)):
		total = len(value)
		for item in itertools.chain(value, value.values()) if isinstance(value, dict) else value:
			if total > limit:
				break
			total += _size(item, limit - total)
		return total
	return 1


def _checked(value):
	"""``value``, when it is within the bounds of a condition's values."""
	if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
		raise _too_big(f"a number of more than {MAX_INT_BITS:,} bits")
	if _size(value) > MAX_VALUE_SIZE:
		raise _too_big(f"a value of more than {MAX_VALUE_SIZE:,} characters or items")
	return value


_SEQUENCES = (str, bytes, list, tuple)


def _integer(value) -> bool:
	return isinstance(value, int)  # bool too


def _add(a, b):
	if isinstance(a, _SEQUENCES) and isinstance(b, _SEQUENCES):
		if _size(a) + _size(b) > MAX_VALUE_SIZE:
			raise _too_big(f"a value of more than {MAX_VALUE_SIZE:,} characters or items")
	return a + b


def _mult(a, b):
	if _integer(a) and _integer(b):
		if a.bit_length() + b.bit_length() > MAX_INT_BITS:
			raise _too_big(f"a number of more than {MAX_INT_BITS:,} bits")
	elif (_integer(b) and isinstance(a, _SEQUENCES)) or (_integer(a) and isinstance(b, _SEQUENCES)):
		sequence, times = (a, b) if _integer(b) else (b, a)
		if times > 0 and _size(sequence) * times > MAX_VALUE_SIZE:
			raise _too_big(f"a value of more than {MAX_VALUE_SIZE:,} characters or items")
	return a * b


def _power(a, b):
	if _integer(a) and _integer(b) and b > 0 and abs(a) > 1:
		if a.bit_length() * b > MAX_INT_BITS:
			raise _too_big(f"a number of more than {MAX_INT_BITS:,} bits")
	elif _integer(b) and abs(b) > MAX_INT_BITS:  # a float (or -1, 0, 1) to a huge power: say no
		raise _too_big(f"a power with an exponent over {MAX_INT_BITS:,}")
	return a**b


def _lshift(a, b):
	if _integer(a) and _integer(b) and a.bit_length() + b > MAX_INT_BITS:
		raise _too_big(f"a number of more than {MAX_INT_BITS:,} bits")
	return a << b


def _rshift(a, b):
	if _integer(b) and b > MAX_INT_BITS:
		return a >> MAX_INT_BITS  # as much as shifting further: 0 or -1
	return a >> b


# a %-format directive: %(key)flags width .precision length type
_PERCENT_DIRECTIVE = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)", re.DOTALL)


def _mod(a, b):
	if not isinstance(a, (str, bytes)):
		return a % b
	text = a if isinstance(a, str) else a.decode("latin-1")
	directives = _PERCENT_DIRECTIVE.findall(text)
	for width, precision, _kind in directives:
		for number in (width, precision):
			if number == "*":
				raise ConditionError("the condition may not use * widths in % formatting; write the number")
			if number and int(number) > MAX_FORMAT_WIDTH:
				raise _too_big(f"a width or precision over {MAX_FORMAT_WIDTH:,}")
	values = b.values() if isinstance(b, dict) else b if isinstance(b, tuple) else (b,)
	widest = max((_size(value) for value in values), default=0) * 6  # repr() may take 6 per character
	if len(a) + len(directives) * (widest + MAX_FORMAT_WIDTH) > MAX_VALUE_SIZE:
		raise _too_big(f"a value of more than {MAX_VALUE_SIZE:,} characters or items")
	return a % b


_OPERATORS = {
	**simpleeval.DEFAULT_OPERATORS,
	ast.Add: _add,
	ast.Mult: _mult,
	ast.Pow: _power,
	ast.LShift: _lshift,
	ast.RShift: _rshift,
	ast.Mod: _mod,
}
_DIGITS = re.compile(r"\d+")


class _BoundedEval(simpleeval.EvalWithCompoundTypes):
	"""simpleeval without comprehensions, with a budget of steps and time, every operation bounded
	before it runs and every value built checked."""

	def __init__(self, names):
		super().__init__(
			operators=dict(_OPERATORS), functions=dict(FUNCTIONS), names=names, allowed_attrs=_ALLOWED_ATTRS
		)
		for node in (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp):
			self.nodes.pop(node, None)
		self._steps = 0
		self._deadline = time.monotonic() + MAX_SECONDS

	def _eval(self, node):
		self._steps += 1
		if self._steps > MAX_STEPS or time.monotonic() > self._deadline:
			raise ConditionError("the condition takes too long to evaluate; make it simpler")
		return _checked(super()._eval(node))

	def _eval_formattedvalue(self, node):
		value = self._eval(node.value)
		if node.conversion in (ord("r"), ord("a")):
			value = repr(value) if node.conversion == ord("r") else ascii(value)
		elif node.conversion == ord("s"):
			value = str(value)
		spec = self._eval(node.format_spec) if node.format_spec else ""
		if any(int(number) > MAX_FORMAT_WIDTH for number in _DIGITS.findall(spec)):
			raise _too_big(f"a width or precision over {MAX_FORMAT_WIDTH:,}")
		return _checked(format(value, spec))

	def _eval_joinedstr(self, node: ast.JoinedStr) -> str:
		pieces: list[str] = []
		length = 0
		for value in node.values:
			piece = str(self._eval(value))
			length += len(piece)
			if length > MAX_VALUE_SIZE:
				raise _too_big(f"a value of more than {MAX_VALUE_SIZE:,} characters or items")
			pieces.append(piece)
		return "".join(pieces)


@functools.lru_cache(maxsize=256)
def check_condition(expression: str) -> ast.Expression:
	"""Parse and check a condition; ConditionError says what is wrong in plain words."""
	if len(expression) > MAX_EXPRESSION_LENGTH:
		raise ConditionError(f"the condition is longer than {MAX_EXPRESSION_LENGTH} characters")
	try:
		tree = ast.parse(expression.strip(), mode="eval")
	except SyntaxError as exc:
		raise ConditionError(
			f"the condition is not a valid expression: {exc.msg} (at character {exc.offset or 0})",
			hint='Example: doc.subject == "Some important email"',
		) from None
	for node in ast.walk(tree):
		if isinstance(node, _FORBIDDEN_NODES):
			raise ConditionError(f"the condition may not use {type(node).__name__} expressions")
		if (
			isinstance(node, ast.Name)
			and node.id not in FUNCTIONS
			and node.id not in ("doc", "True", "False", "None")
		):
			raise ConditionError(
				f"unknown name {node.id!r} in the condition: use doc.FIELD",
				hint="Fields: " + ", ".join(sorted(FIELD_NAMES)),
			)
		if isinstance(node, ast.Attribute):
			if node.attr.startswith("_"):
				raise ConditionError(f"the condition may not use {node.attr!r}")
			if isinstance(node.value, ast.Name) and node.value.id == "doc" and node.attr not in FIELD_NAMES:
				raise ConditionError(
					f"the message has no field {node.attr!r}",
					hint="Fields: " + ", ".join(sorted(FIELD_NAMES)),
				)
	return tree


def evaluate_condition(expression: str, message: IncomingMessage, folder: str = "") -> bool:
	"""Whether the message passes; ConditionError when the condition cannot be evaluated."""
	tree = check_condition(expression)
	evaluator = _BoundedEval({"doc": MessageFields.of(message, folder)})
	evaluator.expr = expression
	try:
		return bool(evaluator._eval(tree.body))
	except ConditionError:
		raise
	except simpleeval.InvalidExpression as exc:
		raise ConditionError(f"the condition cannot be evaluated: {exc}") from None
	except Exception as exc:  # a TypeError from comparing a date with a string, say
		raise ConditionError(f"the condition failed on this message: {type(exc).__name__}: {exc}") from None
