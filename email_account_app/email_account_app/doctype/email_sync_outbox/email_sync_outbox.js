// Copyright (c) 2026, email_account_app developers
// License: MIT. See license.txt

frappe.ui.form.on("Email Sync Outbox", {
	refresh(frm) {
		if (["Failed", "Partly Sent"].includes(frm.doc.status)) {
			frm.add_custom_button(__("Send Again"), () =>
				frm.call("retry").then(() => frm.reload_doc())
			);
		}
		if (frm.doc.error) {
			frm.set_intro(frappe.utils.escape_html(frm.doc.error), frm.doc.status === "Sent" ? "blue" : "red");
		}
	},
});
