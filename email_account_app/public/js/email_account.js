// Core's Email Account form, extended by Email Account App: Test Connection, Pull Now, the last
// pull, and a plain warning when another app's controller runs instead of the app's.
// The headline is built from escaped text; only the relative time (frappe's own markup) is HTML.

// how often, and how many times, the form asks whether a queued pull is done
const PULL_POLL_MS = 3000;
const PULL_POLL_TIMES = 60;

function show_status(frm, status) {
	frm.dashboard.clear_headline();
	if (status.message) {
		frm.dashboard.set_headline_alert(
			frappe.utils.escape_html(status.message),
			status.controls ? "blue" : "orange"
		);
	} else if (status.last_pull) {
		// comment_when gives HTML (a <span> that frappe keeps up to date): it is not escaped
		const when = frappe.datetime.comment_when(status.last_pull);
		const result = status.last_error
			? status.last_error_html || frappe.utils.escape_html(status.last_error)
			: frappe.utils.escape_html(status.last_pull_summary || "");
		frm.dashboard.set_headline_alert(
			__("Last pull {0}: {1}", [when, result]),
			status.last_error ? "red" : "green"
		);
	}
}

function folder_list(folders) {
	// the folders the server has, with their counts ("-": the server does not say)
	if (!folders.length) return "";
	const esc = frappe.utils.escape_html;
	const items = folders.map(
		(f) =>
			`<li>${esc(f.name)}: ${__("{0} messages, {1} unseen", [
				esc(String(f.messages ?? "-")),
				esc(String(f.unseen ?? "-")),
			])}</li>`
	);
	return `<ul class="mt-2 mb-0">${items.join("")}</ul>`;
}

function wait_for_pull(frm, since) {
	// the pull runs in a background job: show its result on the form when it has finished
	let tries = 0;
	const ask = () => {
		if (frm.is_new() || frm.doc.name !== name || tries++ >= PULL_POLL_TIMES) return;
		frappe
			.xcall("email_account_app.api.account_status", { name })
			.then((status) => {
				if (status && status.last_pull && status.last_pull !== since) {
					if (cur_frm === frm) show_status(frm, status);
				} else {
					setTimeout(ask, PULL_POLL_MS);
				}
			})
			.catch(() => {});
	};
	const name = frm.doc.name;
	setTimeout(ask, PULL_POLL_MS);
}

frappe.ui.form.on("Email Account", {
	refresh(frm) {
		if (frm.is_new()) return;
		const name = frm.doc.name;
		frappe
			.call("email_account_app.api.account_status", { name })
			.then(({ message: status }) => {
				// a late answer for another document (or an older refresh) changes nothing
				if (!status || frm.doc.name !== name) return;
				show_status(frm, status);
				if (!status.controls || !status.engine_serves) return;
				frm.remove_custom_button(__("Test Connection"));
				frm.remove_custom_button(__("Pull Now"));
				frm.add_custom_button(__("Test Connection"), () => {
					if (frm.is_dirty()) {
						frappe.msgprint({
							title: __("Not saved"),
							indicator: "orange",
							message: __(
								"Test Connection checks the saved settings. Save first: saving checks the connection of the new settings."
							),
						});
						return;
					}
					frappe
						.call({
							method: "email_account_app.api.test_connection",
							args: { name: frm.doc.name },
							freeze: true,
							freeze_message: __("Connecting..."),
						})
						.then(({ message: result }) => {
							// the *_html words are HTML from the server (escaped there, fields by their labels)
							const esc = frappe.utils.escape_html;
							const lines = (result.problems_html || []).concat(
								(result.parts || []).map(
									(p) =>
										`${esc(p.label)} (${esc(p.server)}): ${p.message_html}` +
										folder_list(p.folders || [])
								)
							);
							frappe.msgprint({
								title: result.ok ? __("Connection works") : __("Cannot connect"),
								indicator: result.ok ? "green" : "red",
								message: lines.join("<br>"),
							});
						});
				});
				if (frm.doc.enable_incoming) {
					frm.add_custom_button(__("Pull Now"), () => {
						frappe
							.call("email_account_app.api.pull_now", { name: frm.doc.name })
							.then(({ message }) => {
								frappe.show_alert({ message, indicator: "green" });
								wait_for_pull(frm, status.last_pull);
							});
					});
				}
			});
	},
});
