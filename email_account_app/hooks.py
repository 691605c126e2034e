app_name = "email_account_app"
app_title = "Email Account App"
app_publisher = "email_account_app developers"
app_description = "Email accounts that sync mail both ways"
app_email = "developers@email-account-app.invalid"
app_license = "mit"

export_python_type_annotations = True

# Desk
# ----
# the awaiting-password dialog after login
app_include_js = "/assets/email_account_app/js/email_account_app.js"
boot_session = "email_account_app.boot.boot_session"

# Install / uninstall
# -------------------
after_install = "email_account_app.install.after_install"
after_migrate = "email_account_app.install.after_migrate"
after_app_install = "email_account_app.install.after_app_install"
before_uninstall = "email_account_app.install.before_uninstall"

# Scheduled tasks
# ---------------
# pulls: one job per account every 5 minutes (deduplicated: a pull still running is not queued
# again); the outbox every minute; unreplied notices with the pulls
scheduler_events = {
	"cron": {
		"*/5 * * * *": [
			"email_account_app.tasks.pull_all",
			"email_account_app.tasks.notify_unreplied",
		],
		"* * * * *": [
			"email_account_app.tasks.flush_all",
		],
	},
}

# Mail
# ----
# Frappe v15's EmailQueue.send calls this per recipient instead of its own SMTP: site mail
# (notifications, frappe.sendmail, replies from a document's timeline) goes out through the
# matching Email Sync Account, else as core would send it
override_email_send = "email_account_app.events.send_site_mail"

# SMTP sessions opened by override_email_send are closed at the end of the request or job
after_request = ["email_account_app.events.close_senders"]
after_job = ["email_account_app.events.close_senders"]
