app_name = "email_account_app"
app_title = "Email Account App"
app_publisher = "email_account_app developers"
app_description = "Email accounts that sync mail both ways"
app_email = "developers@email-account-app.invalid"
app_license = "mit"

export_python_type_annotations = True

from frappe import __version__ as _frappe_version

# Core's Email Account and Email Domain, with the app's behaviour (overrides/)
# ---------------------------------------------------------------------------
# v15: the class the site would use without the app, with ours on top, composed per site
# (overrides/compose.py); v16: the app's mixins are applied by Frappe itself. Never both.
if int(_frappe_version.split(".")[0]) >= 16:
	extend_doctype_class = {
		"Email Account": ["email_account_app.overrides.email_account.EmailAccountEngine"],
		"Email Domain": ["email_account_app.overrides.email_domain.EmailDomainEngine"],
	}
else:
	override_doctype_class = {
		"Email Account": "email_account_app.overrides.email_account.EmailAccount",
		"Email Domain": "email_account_app.overrides.email_domain.EmailDomain",
	}

# Desk
# ----
# Test Connection, Pull Now and the last pull on core's Email Account form
doctype_js = {"Email Account": "public/js/email_account.js"}

# Install / uninstall
# -------------------
after_install = "email_account_app.install.after_install"
after_migrate = "email_account_app.install.after_migrate"
before_uninstall = "email_account_app.install.before_uninstall"

# Scheduled tasks
# ---------------
# pulls: one job per account every minute (core's own pull every 10 minutes comes to the same
# receive(); a job queued or running for an account is not queued again, and the pull's lock lets
# one pull per account run at a time whichever scheduler started it); unreplied notices every 5
# minutes (what the engine sends waits in core's Email Queue, which core flushes)
scheduler_events = {
	"cron": {
		"* * * * *": [
			"email_account_app.tasks.pull_all",
		],
		"*/5 * * * *": [
			"email_account_app.tasks.notify_unreplied",
		],
	},
}

# Mail
# ----
# Frappe v15's EmailQueue.send calls this per recipient instead of its own SMTP: site mail
# (notifications, frappe.sendmail, replies from a document's timeline, the engine's auto-replies)
# goes out through the engine with the SMTP settings of the Email Account core chose
override_email_send = "email_account_app.events.send_site_mail"

# SMTP sessions opened by override_email_send are closed at the end of the request or job
after_request = ["email_account_app.events.close_senders"]
after_job = ["email_account_app.events.close_senders"]
