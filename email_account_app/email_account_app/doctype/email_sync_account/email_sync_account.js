// Copyright (c) 2026, email_account_app developers
// License: MIT. See license.txt

frappe.ui.form.on("Email Sync Account", {
	refresh(frm) {
		frm.trigger("show_status");
		if (frm.is_new()) return;
		if (frm.doc.enable_incoming || frm.doc.enable_outgoing) {
			frm.add_custom_button(__("Test Connection"), () => frm.trigger("test_connection"));
		}
		if (frm.doc.enable_incoming && !frm.doc.awaiting_password) {
			frm.add_custom_button(__("Pull Now"), () =>
				frappe
					.call("email_account_app.api.pull_now", { name: frm.doc.name })
					.then((r) => frappe.show_alert({ message: r.message, indicator: "blue" }))
			);
		}
		frm.add_custom_button(
			__("Messages"),
			() => frappe.set_route("List", "Email Sync Message", { account: frm.doc.name }),
			__("View")
		);
		frm.add_custom_button(
			__("Outbox"),
			() => frappe.set_route("List", "Email Sync Outbox", { account: frm.doc.name }),
			__("View")
		);
	},

	show_status(frm) {
		// the last pull and its error in plain words, above the form
		frm.set_intro("");
		if (frm.is_new()) return;
		if (frm.doc.awaiting_password) {
			frm.set_intro(
				__("This account waits for its password: its owner is asked for it after login."),
				"orange"
			);
			return;
		}
		if (!frm.doc.enable_incoming) return;
		if (!frm.doc.last_pull) {
			frm.set_intro(__("Not pulled yet: the first pull runs within a few minutes."), "blue");
			return;
		}
		const when = comment_when(frm.doc.last_pull);
		if (frm.doc.last_error) {
			frm.set_intro(
				__("Last pull {0} failed: {1}", [when, frappe.utils.escape_html(frm.doc.last_error)]),
				"red"
			);
		} else {
			frm.set_intro(
				__("Last pull {0}: {1}", [
					when,
					frappe.utils.escape_html(frm.doc.last_pull_summary || __("no new mail.")),
				]),
				"green"
			);
		}
	},

	test_connection(frm) {
		if (frm.is_dirty()) {
			frappe.msgprint(__("Save the account first: the test uses the saved settings."));
			return;
		}
		frappe
			.call({
				method: "email_account_app.api.test_connection",
				args: { name: frm.doc.name },
				freeze: true,
				freeze_message: __("Connecting to the mail servers..."),
			})
			.then((r) => {
				const result = r.message || {};
				const esc = frappe.utils.escape_html;
				let html = "";
				(result.problems || []).forEach((p) => (html += `<p class="text-danger">${esc(p)}</p>`));
				(result.parts || []).forEach((part) => {
					const mark = part.ok
						? `<span class="indicator-pill green">${__("Works")}</span>`
						: `<span class="indicator-pill red">${__("Failed")}</span>`;
					html += `<p><b>${esc(part.label)}</b> ${esc(part.server)} ${mark}<br>${esc(
						part.message || ""
					)}</p>`;
					if (part.folders && part.folders.length) {
						html += `<table class="table table-sm"><tr><th>${__("Folder")}</th><th>${__(
							"Messages"
						)}</th><th>${__("Unseen")}</th></tr>`;
						part.folders.forEach((f) => {
							html += `<tr><td>${esc(f.name)}</td><td>${esc(String(f.messages))}</td><td>${esc(
								String(f.unseen)
							)}</td></tr>`;
						});
						html += "</table>";
					}
				});
				frappe.msgprint({
					title: result.ok ? __("The account works") : __("The account needs attention"),
					message: html,
					indicator: result.ok ? "green" : "red",
				});
			});
	},

	email_id(frm) {
		frm.trigger("fill_in_servers");
	},

	domain(frm) {
		frm.trigger("fill_in_servers");
	},

	fill_in_servers(frm) {
		// the servers a domain (or a well-known provider) gives the address, where the form has none
		if (!frm.doc.email_id && !frm.doc.domain) return;
		frappe
			.call("email_account_app.api.server_settings_for", {
				email_id: frm.doc.email_id,
				domain: frm.doc.domain,
				email_server: frm.doc.email_server,
				smtp_server: frm.doc.smtp_server,
			})
			.then((r) => {
				Object.entries(r.message || {}).forEach(([field, value]) => frm.set_value(field, value));
			});
	},
});
