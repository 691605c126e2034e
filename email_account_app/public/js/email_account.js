// Core's Email Account form, extended by Email Account App: Test Connection, Pull Now, the last
// pull, and a plain warning when another app's controller runs instead of the app's.
frappe.ui.form.on("Email Account", {
	refresh(frm) {
		if (frm.is_new()) return;
		frappe
			.call("email_account_app.api.account_status", { name: frm.doc.name })
			.then(({ message: status }) => {
				if (!status) return;
				if (status.message) {
					frm.dashboard.set_headline_alert(
						`<div>${frappe.utils.escape_html(status.message)}</div>`,
						status.controls ? "blue" : "orange"
					);
				} else if (status.last_pull) {
					const when = frappe.datetime.comment_when(status.last_pull);
					const text = status.last_error
						? __("Last pull {0}: {1}", [when, status.last_error])
						: __("Last pull {0}: {1}", [when, status.last_pull_summary || ""]);
					frm.dashboard.set_headline_alert(
						`<div>${frappe.utils.escape_html(text)}</div>`,
						status.last_error ? "red" : "green"
					);
				}
				if (!status.controls || !status.engine_serves) return;
				frm.add_custom_button(__("Test Connection"), () => {
					frappe
						.call({
							method: "email_account_app.api.test_connection",
							args: { name: frm.doc.name },
							freeze: true,
							freeze_message: __("Connecting..."),
						})
						.then(({ message: result }) => {
							const lines = (result.problems || []).concat(
								(result.parts || []).map((p) => `${p.label} (${p.server}): ${p.message}`)
							);
							frappe.msgprint({
								title: result.ok ? __("Connection works") : __("Cannot connect"),
								indicator: result.ok ? "green" : "red",
								message: lines.map((l) => frappe.utils.escape_html(l)).join("<br>"),
							});
						});
				});
				if (frm.doc.enable_incoming) {
					frm.add_custom_button(__("Pull Now"), () => {
						frappe
							.call("email_account_app.api.pull_now", { name: frm.doc.name })
							.then(({ message }) => frappe.show_alert({ message, indicator: "green" }));
					});
				}
			});
	},
});
