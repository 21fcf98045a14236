// live.js keeps a thinfleet page current without a reload. The server
// sends a "change" event on the page's one Server-Sent Events stream
// whenever something the page shows changed; the script then fetches the
// page again and swaps in the parts marked data-region. Every page works
// without it: a reload shows the truth.
"use strict";

(function () {
	var state = document.getElementById("live-state");

	function show(text, off) {
		if (!state) return;
		state.hidden = false;
		state.textContent = text;
		state.classList.toggle("off", !!off);
	}

	// Relative times, in the words the server uses.
	function ago(t, now) {
		var s = Math.floor((now - t) / 1000);
		if (s < 1) return "just now";
		if (s < 60) return s + " s ago";
		if (s < 3600) return Math.floor(s / 60) + " min ago";
		if (s < 48 * 3600) return Math.floor(s / 3600) + " h ago";
		return Math.floor(s / 86400) + " d ago";
	}
	function tick() {
		var now = Date.now();
		document.querySelectorAll("time[data-ago]").forEach(function (el) {
			var t = Date.parse(el.getAttribute("datetime"));
			if (!isNaN(t)) el.textContent = ago(t, now);
		});
	}
	setInterval(tick, 1000);

	// Filters apply as soon as they change. The listener is on the
	// document, so it holds for forms that a refresh swaps in.
	document.addEventListener("change", function (e) {
		var form = e.target.closest("form[data-autosubmit]");
		if (form && e.target.matches("select, input[type=checkbox]")) form.requestSubmit();
	});

	// Bulk actions on the Clients page: the box in the table's head ticks
	// every device on the page; the bar says how many are ticked; Enter
	// in an action's field does that action (the form's default button
	// does nothing, so Enter never does another).
	function boxes() { return document.querySelectorAll("input[type=checkbox][name=id][form=bulk]"); }
	function counted() {
		var n = 0, rows = 0, ticked = 0;
		boxes().forEach(function (b) { if (b.checked) n++; });
		document.querySelectorAll("table.clients input[type=checkbox][name=id]").forEach(function (b) {
			rows++;
			if (b.checked) ticked++;
		});
		var head = document.getElementById("select-page");
		if (head) {
			head.checked = rows > 0 && ticked === rows;
			head.indeterminate = ticked > 0 && ticked < rows;
		}
		var bulk = document.getElementById("bulk");
		var every = bulk && bulk.querySelector("input[name=all]");
		if (bulk) bulk.classList.toggle("idle", n === 0 && !(every && every.checked));
		var table = document.getElementById("clients"), count = document.getElementById("all-count");
		if (table && count && table.dataset.matching) {
			count.textContent = table.dataset.matching;
			document.getElementById("all-matching").hidden = table.dataset.matching === "0";
		}
		var out = document.getElementById("selected-count");
		if (!out) return;
		if (every && every.checked) out.textContent = "All matching devices";
		else if (n === 0) out.textContent = "Tick devices to act on them";
		else out.textContent = n === 1 ? "1 device selected" : n + " devices selected";
	}
	document.addEventListener("change", function (e) {
		if (e.target.id === "select-page") {
			document.querySelectorAll("table.clients input[type=checkbox][name=id]").forEach(function (b) { b.checked = e.target.checked; });
		}
		if (e.target.matches("input[type=checkbox]")) counted();
	});
	document.addEventListener("keydown", function (e) {
		var action = e.key === "Enter" && e.target.getAttribute && e.target.getAttribute("data-action");
		if (!action || !e.target.form) return;
		e.preventDefault();
		var button = e.target.form.querySelector("button[name=action][value='" + action + "']");
		if (button) button.click();
	});
	counted();

	var src = document.body.getAttribute("data-live");
	if (!src || !window.EventSource || !window.fetch) return;

	var busy = false, again = false, stream;

	function regions(doc) {
		return Array.prototype.map.call(doc.querySelectorAll("[data-region]"), function (el) { return el.id; }).join(" ");
	}

	// swap replaces each region that the fresh page shows differently.
	// When the page changed shape (a device waiting for approval reported
	// for the first time), it takes the whole of the fresh page's main.
	function swap(html) {
		var doc = new DOMParser().parseFromString(html, "text/html");
		var main = doc.querySelector("main");
		if (main && regions(doc) !== regions(document)) {
			document.querySelector("main").replaceWith(document.adoptNode(main));
			tick();
			return;
		}
		document.querySelectorAll("[data-region]").forEach(function (el) {
			var fresh = doc.getElementById(el.id);
			if (fresh && fresh.innerHTML !== el.innerHTML) {
				keepTicks(el, fresh);
				el.replaceWith(document.adoptNode(fresh));
			}
		});
		tick();
		counted();
	}

	// keepTicks carries the devices ticked for a bulk action over to the
	// fresh copy of their region.
	function keepTicks(el, fresh) {
		el.querySelectorAll("input[type=checkbox][name]:checked").forEach(function (b) {
			fresh.querySelectorAll("input[type=checkbox][name]").forEach(function (f) {
				if (f.name === b.name && f.value === b.value) f.checked = true;
			});
		});
	}

	function refresh() {
		if (busy) { again = true; return; }
		busy = true;
		fetch(location.href, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" } })
			.then(function (r) {
				if (r.redirected && new URL(r.url).pathname === "/login") {
					stream.close();
					show("signed out, reload to sign in", true);
					return;
				}
				if (!r.ok) throw new Error(r.status);
				return r.text().then(swap);
			})
			.catch(function () { show("update failed, retrying", true); again = true; })
			.finally(function () {
				busy = false;
				if (again) { again = false; setTimeout(refresh, 300); }
			});
	}

	stream = new EventSource(src);
	stream.addEventListener("open", function () { show("live"); });
	stream.addEventListener("change", refresh);
	stream.addEventListener("error", function () {
		show(stream.readyState === EventSource.CLOSED ? "not live, reload the page" : "reconnecting", true);
	});
	// A reconnected stream may have missed changes: catch up at once.
	var opened = false;
	stream.addEventListener("open", function () {
		if (opened) refresh();
		opened = true;
	});
})();
