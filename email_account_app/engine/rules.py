"""Import conditions: a Python-like expression over the message's fields, in a sandbox that holds.

    doc.subject == "Some important email"
    "invoice" in doc.subject.lower() and doc.sender.endswith("@example.com")

Evaluated with simpleeval, narrowed further: only the names ``doc`` and a few functions; attribute
access only to the message's fields and a short list of string and date methods (so no dunders,
no ``format``, no ``replace`` that could build a huge string); no lambdas, no comprehensions; a
bounded expression size, number of steps and time. A condition is checked when the account is
saved (syntax, unknown names) and evaluated at pull time, where any error skips the message with
the reason.
"""

from __future__ import annotations

import ast
import functools
import time
from dataclasses import dataclass, fields
from datetime import date, datetime

import simpleeval

from .errors import ConditionError
from .parsing import IncomingMessage

MAX_EXPRESSION_LENGTH = 2000
MAX_STEPS = 5000
MAX_SECONDS = 0.25
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
_FORBIDDEN_NODES = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Lambda, ast.NamedExpr)


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


class _BoundedEval(simpleeval.EvalWithCompoundTypes):
	"""simpleeval without comprehensions, with a budget of steps and time."""

	def __init__(self, names):
		super().__init__(functions=dict(FUNCTIONS), names=names, allowed_attrs=_ALLOWED_ATTRS)
		for node in (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp):
			self.nodes.pop(node, None)
		self._steps = 0
		self._deadline = time.monotonic() + MAX_SECONDS

	def _eval(self, node):
		self._steps += 1
		if self._steps > MAX_STEPS or time.monotonic() > self._deadline:
			raise ConditionError("the condition takes too long to evaluate; make it simpler")
		return super()._eval(node)


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
