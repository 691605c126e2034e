"""Import conditions: what they can say, and a sandbox that holds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from email_account_app.engine.errors import ConditionError, ConfigError
from email_account_app.engine.parsing import parse_message
from email_account_app.engine.rules import check_condition, evaluate_condition
from email_account_app.engine.settings import account_from_mapping

from .factory import make_mail


@pytest.fixture(scope="module")
def invoice():
	return parse_message(
		make_mail(
			subject="Invoice 42 for November",
			sender="Billing <billing@example.com>",
			to="accounts@ours.test",
			cc="boss@ours.test",
			body="Please find the invoice attached.",
			attachments=[("invoice-42.pdf", b"%PDF-1.4 fake", "application/pdf")],
		)
	)


@pytest.mark.parametrize(
	"expression, expected",
	[
		('doc.subject == "Invoice 42 for November"', True),
		('doc.subject == "Some important email"', False),
		('"invoice" in doc.subject.lower() and doc.sender.endswith("@example.com")', True),
		('doc.sender in ("a@example.com", "billing@example.com")', True),
		('doc.sender_full_name == "Billing"', True),
		('"boss@ours.test" in doc.recipients', True),
		('"boss@ours.test" in doc.cc and "accounts@ours.test" in doc.to', True),
		("doc.has_attachment", True),
		('"invoice-42.pdf" in doc.attachments', True),
		('"attached" in doc.text_content', True),
		("doc.date.year >= 2026 and doc.date.weekday() < 7", True),
		("len(doc.subject) > 100", False),
		('not doc.subject.startswith("Re:")', True),
		('doc.folder == "INBOX"', True),
	],
)
def test_conditions_say_what_users_write(invoice, expression, expected):
	assert evaluate_condition(expression, invoice, "INBOX") is expected


@pytest.mark.parametrize(
	"expression, words",
	[
		("doc.subject ==", "not a valid expression"),
		("subject == 'x'", "unknown name 'subject'"),
		("doc.nope == 1", "no field 'nope'"),
		("doc.__class__", "may not use"),
		("doc.subject.__class__.__mro__", "may not use"),
		("__import__('os').system('true')", "unknown name '__import__'"),
		("open('/etc/passwd')", "unknown name 'open'"),
		("[x for x in doc.subject]", "ListComp"),
		("(lambda: 1)()", "Lambda"),
		("x" * 3000, "longer than"),
	],
)
def test_bad_conditions_are_refused_with_a_reason(expression, words):
	with pytest.raises(ConditionError) as info:
		check_condition(expression)
	assert words in str(info.value)


@pytest.mark.parametrize(
	"expression",
	[
		"doc.subject.format()",  # not an allowed method
		"doc.subject.replace('a', doc.subject)",
		"doc.subject.encode()",
		"doc.date.replace(year=1)",
		"'{0.__class__}'.format(doc)",
		"doc.text_content * 10000000",
		"9 ** 9 ** 9 ** 9",
	],
)
def test_the_sandbox_holds_at_run_time(invoice, expression):
	with pytest.raises(ConditionError):
		evaluate_condition(expression, invoice)


def test_a_type_error_is_a_condition_error(invoice):
	with pytest.raises(ConditionError, match="failed on this message"):
		evaluate_condition('doc.date > "2020"', invoice)


def test_conditions_are_checked_when_the_account_is_saved():
	with pytest.raises(ConfigError, match="unknown name"):
		account_from_mapping(
			{
				"email_id": "a@example.com",
				"password": "p",
				"email_server": "x.test",
				"enable_incoming": 1,
				"condition": "subject == 'x'",
			}
		)
	with pytest.raises(ConfigError, match="folder 'Jobs'"):
		account_from_mapping(
			{
				"email_id": "a@example.com",
				"password": "p",
				"email_server": "x.test",
				"enable_incoming": 1,
				"folders": [{"folder_name": "Jobs", "condition": "doc.subject =="}],
			}
		)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_either_refused_or_evaluated_without_escaping(invoice, text):
	try:
		check_condition(text)
	except ConditionError:
		return
	try:
		evaluate_condition(text, invoice)
	except ConditionError:
		pass
