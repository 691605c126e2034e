// Email Sync Accounts awaiting a password: after login, ask their owner for it.
frappe.provide("email_account_app");

email_account_app.ask_for_passwords = function (accounts) {
	if (!accounts || !accounts.length) return;
	const account = accounts[0];
	const rest = accounts.slice(1);
	const dialog = new frappe.ui.Dialog({
		title: __("Password for {0}", [account.email_id]),
		fields: [
			{
				fieldtype: "HTML",
				options: `<p class="text-muted">${__(
					"This email account starts syncing once it has its password. It is checked with the mail server before it is saved."
				)}</p>`,
			},
			{ fieldname: "password", fieldtype: "Password", label: __("Password"), reqd: 1 },
		],
		primary_action_label: __("Save"),
		primary_action(values) {
			dialog.disable_primary_action();
			frappe
				.call({
					method: "email_account_app.api.set_awaiting_password",
					args: { name: account.name, password: values.password },
					freeze: true,
					freeze_message: __("Checking with the mail server..."),
				})
				.then((r) => {
					const result = r.message || {};
					if (result.ok) {
						dialog.hide();
						frappe.show_alert({ message: result.message, indicator: "green" }, 7);
						email_account_app.ask_for_passwords(rest);
					} else {
						dialog.enable_primary_action();
						dialog.set_df_property(
							"password",
							"description",
							`<span class="text-danger">${frappe.utils.escape_html(result.message || "")}</span>`
						);
					}
				})
				.catch(() => dialog.enable_primary_action());
		},
		secondary_action_label: __("Later"),
		secondary_action() {
			dialog.hide();
			email_account_app.ask_for_passwords(rest);
		},
	});
	dialog.show();
};

$(document).on("startup", function () {
	const accounts = frappe.boot && frappe.boot.email_sync_awaiting_password;
	if (accounts && accounts.length) {
		setTimeout(() => email_account_app.ask_for_passwords(accounts), 1500);
	}
});
