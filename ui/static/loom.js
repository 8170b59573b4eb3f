// Loom's screen behaviour. No inline script anywhere: the Content-Security-Policy forbids it,
// so every behaviour hangs off data-* attributes here.
(function () {
  "use strict";

  function on(type, selector, handler) {
    document.addEventListener(type, function (event) {
      var target = event.target.closest ? event.target.closest(selector) : null;
      if (target) handler(event, target);
    });
  }

  // The phone-width menu.
  on("click", "[data-toggle-nav]", function (event, button) {
    var nav = document.getElementById(button.getAttribute("aria-controls"));
    var open = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", String(open));
    if (nav) nav.classList.toggle("open", open);
  });

  // The language switch returns to the page the user is on now (which htmx may have
  // changed since the header was drawn).
  on("submit", ".language-switch", function (event, form) {
    var next = form.querySelector("input[name=next]");
    if (next) next.value = window.location.pathname + window.location.search;
  });

  // Lists: select every row, and keep the bulk bar's count right.
  function updateSelection(form) {
    if (!form) return;
    var boxes = form.querySelectorAll("input[name=ids]");
    var checked = form.querySelectorAll("input[name=ids]:checked").length;
    var counter = form.querySelector("[data-selected-count]");
    if (counter) counter.textContent = String(checked);
    form.querySelectorAll("[data-needs-selection]").forEach(function (el) { el.disabled = checked === 0; });
    var all = form.querySelector("[data-select-all]");
    if (all) {
      all.checked = checked > 0 && checked === boxes.length;
      all.indeterminate = checked > 0 && checked < boxes.length;
    }
  }
  on("change", "[data-select-all]", function (event, box) {
    var form = box.closest("form");
    form.querySelectorAll("input[name=ids]").forEach(function (el) { el.checked = box.checked; });
    updateSelection(form);
  });
  on("change", "input[name=ids]", function (event, box) { updateSelection(box.closest("form")); });

  // Child table rows are removed in the page; the save sends the rows that are left.
  on("click", "[data-remove-row]", function (event, button) {
    var row = button.closest("[data-row]");
    var table = row && row.closest("tbody");
    if (row) row.remove();
    if (table) {
      var focus = table.closest("fieldset").querySelector("[data-add-row]");
      if (focus) focus.focus();
      // a live form works out its totals again without the row
      table.dispatchEvent(new Event("change", { bubbles: true }));
    }
  });

  // Live forms (loom.ui.live): the server's answer to a preview of the save marks each
  // field shown or hidden, required or not, read-only or not; this applies the mark to
  // the field around it. Which field is which stays the server's business.
  function applyFieldState(state) {
    var field = state.parentElement && state.parentElement.closest("[data-field]");
    if (!field) return;
    var required = state.getAttribute("data-required") === "true";
    var readOnly = state.getAttribute("data-read-only") === "true";
    field.hidden = state.getAttribute("data-visible") === "false";
    field.querySelectorAll("[data-required-mark]").forEach(function (mark) { mark.hidden = !required; });
    field.querySelectorAll("input:not([type=hidden]), select, textarea").forEach(function (input) {
      if (required) input.setAttribute("aria-required", "true"); else input.removeAttribute("aria-required");
      if (input.type === "checkbox" || input.type === "file" || input.tagName === "SELECT") input.disabled = readOnly;
      else input.readOnly = readOnly;
    });
  }
  // Each edit of a live form is stamped; a preview remembers the stamp it left with.
  var edits = 0;
  document.addEventListener("input", function (event) {
    var form = event.target.closest && event.target.closest("form");
    if (form && form.querySelector("[data-live-form]")) event.target.setAttribute("data-edit", String(++edits));
  }, true);
  function isLivePreview(config) {
    var elt = config && config.elt;
    return !!(elt && elt.hasAttribute && elt.hasAttribute("data-live-form"));
  }
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (isLivePreview(event.detail.requestConfig)) event.detail.requestConfig.loomEdits = edits;
  });
  // An answer that left the server before a row was removed still names the row's parts:
  // those parts are dropped from it (htmx would report each missing one as an error).
  // Nor does an answer replace an input the user changed while it was on its way: it was
  // worked out from the value before, and the change sends a preview of its own.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var config = event.detail.requestConfig;
    if (!isLivePreview(config)) return;
    var sent = config.loomEdits || 0;
    var answer = document.createElement("template");
    answer.innerHTML = event.detail.serverResponse;
    answer.content.querySelectorAll("[hx-swap-oob]").forEach(function (part) {
      var current = document.getElementById(part.id);
      var changed = current && Array.prototype.some.call(current.querySelectorAll("[data-edit]"), function (input) {
        return Number(input.getAttribute("data-edit")) > sent;
      });
      if (!current || changed) part.remove();
    });
    event.detail.serverResponse = answer.innerHTML;
  });
  // An answer never replaces what holds the focus: the user may be typing there.
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var target = event.detail.target;
    if (target && target.contains && target.contains(document.activeElement) && target !== document.body) {
      event.detail.shouldSwap = false;
    }
  });
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var state = event.target;
    if (state && state.matches && state.matches("[data-field-state]")) applyFieldState(state);
  });

  // Link fields: picking a suggestion fills the hidden id and the visible text, and the
  // picker remembers the pair: the id stands only while the text still reads as its title.
  on("click", "[data-pick-id]", function (event, option) {
    event.preventDefault();
    var picker = option.closest("[data-link-picker]");
    picker.querySelector("input[type=hidden]").value = option.getAttribute("data-pick-id");
    picker.setAttribute("data-picked-id", option.getAttribute("data-pick-id"));
    picker.setAttribute("data-picked-title", option.getAttribute("data-pick-title"));
    var text = picker.querySelector("input[type=search]");
    // a suggestion request still on its way must not reopen the list
    picker.setAttribute("data-suggestions-closed", "");
    text.value = option.getAttribute("data-pick-title");
    picker.querySelector("[data-suggestions]").innerHTML = "";
    text.setAttribute("aria-expanded", "false");
    text.focus();
    text.dispatchEvent(new Event("change", { bubbles: true }));
  });
  on("input", "[data-link-picker] input[type=search]", function (event, text) {
    // any edit of the name (typing over it, appending, pasting, clearing) forgets the
    // record picked before, unless the text is back to exactly that record's title
    var picker = text.closest("[data-link-picker]");
    picker.removeAttribute("data-suggestions-closed");
    var same = picker.hasAttribute("data-picked-id") && text.value === picker.getAttribute("data-picked-title");
    picker.querySelector("input[type=hidden]").value = same ? picker.getAttribute("data-picked-id") : "";
  });
  // Suggestions that arrive after the list was closed (a pick, Esc) stay closed until the
  // user types again. (Aborting the request instead would log an error in the console.)
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    var picker = target && target.closest && target.closest("[data-link-picker]");
    if (picker && picker.hasAttribute("data-suggestions-closed")) event.detail.shouldSwap = false;
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    var list = event.detail.target;
    var picker = list && list.matches && list.matches("[data-suggestions]") ? list.closest("[data-link-picker]") : null;
    var text = picker && picker.querySelector("input[type=search]");
    if (text) text.setAttribute("aria-expanded", String(list.children.length > 0));
  });
  function closeSuggestions(except) {
    document.querySelectorAll("[data-suggestions]").forEach(function (list) {
      var picker = list.closest("[data-link-picker]");
      if (picker === except) return;
      list.innerHTML = "";
      var text = picker && picker.querySelector("input[type=search]");
      if (text) text.setAttribute("aria-expanded", "false");
    });
  }
  document.addEventListener("click", function (event) {
    closeSuggestions(event.target.closest ? event.target.closest("[data-link-picker]") : null);
  });
  on("keydown", "[data-link-picker]", function (event, picker) {
    if (event.key === "Escape") {
      // Esc closes the suggestions and keeps the pick: without this, Chrome empties a
      // search box on Esc, wiping the picked record
      event.preventDefault();
      picker.setAttribute("data-suggestions-closed", "");
      closeSuggestions(null);
      picker.querySelector("input[type=search]").focus();
    }
  });
  on("keydown", "[data-link-picker] input[type=search]", function (event, text) {
    if (event.key === "ArrowDown") {
      var first = text.closest("[data-link-picker]").querySelector("[data-pick-id]");
      if (first) { event.preventDefault(); first.focus(); }
    }
  });
  on("keydown", "[data-pick-id]", function (event, option) {
    var items = Array.prototype.slice.call(option.closest("[data-suggestions]").querySelectorAll("[data-pick-id]"));
    var i = items.indexOf(option);
    if (event.key === "ArrowDown" && i < items.length - 1) { event.preventDefault(); items[i + 1].focus(); }
    if (event.key === "ArrowUp") {
      event.preventDefault();
      if (i > 0) items[i - 1].focus();
      else option.closest("[data-link-picker]").querySelector("input[type=search]").focus();
    }
  });

  // Filters and searches send only what the user filled in, so URLs stay short and readable.
  document.addEventListener("htmx:configRequest", function (event) {
    var elt = event.detail.elt;
    if (event.detail.verb !== "get" || !elt.closest || !elt.closest("[data-drop-empty]")) return;
    var params = event.detail.parameters;
    var names = [];
    if (params instanceof FormData) {
      params.forEach(function (value, name) { if (value === "") names.push(name); });
      names.forEach(function (name) {
        var kept = params.getAll(name).filter(function (v) { return v !== ""; });
        params.delete(name);
        kept.forEach(function (v) { params.append(name, v); });
      });
    } else {
      Object.keys(params).forEach(function (name) { if (params[name] === "") delete params[name]; });
    }
  });

  // Filter chips: removing one clears its inputs and reloads the list.
  on("click", "[data-clear-filter]", function (event, chip) {
    event.preventDefault();
    var form = document.getElementById("list-filters");
    if (!form) return;
    var names = chip.getAttribute("data-clear-filter").split(" ");
    form.querySelectorAll("input, select").forEach(function (el) {
      if (names.indexOf(el.name) === -1) return;
      if (el.type === "checkbox" || el.type === "radio") el.checked = false;
      else el.value = "";
      if (el.type === "hidden" && el.closest("[data-link-picker]")) {
        var text = el.closest("[data-link-picker]").querySelector("input[type=search]");
        if (text) text.value = "";
      }
    });
    if (window.htmx) window.htmx.trigger(form, "submit");
  });

  // On a phone the filter panel starts closed, so the list is what the user sees first.
  function collapseOnNarrow(root) {
    if (!window.matchMedia("(max-width: 720px)").matches) return;
    root.querySelectorAll("[data-collapse-narrow]:not([data-collapse-checked])").forEach(function (panel) {
      panel.setAttribute("data-collapse-checked", "");
      panel.removeAttribute("open");
    });
  }
  document.addEventListener("DOMContentLoaded", function () { collapseOnNarrow(document); });
  document.addEventListener("htmx:afterSettle", function (event) { collapseOnNarrow(event.detail.elt); });

  // After a swap, move focus to the first error so keyboard users land on it.
  document.addEventListener("htmx:afterSettle", function (event) {
    var invalid = event.detail.elt.querySelector && event.detail.elt.querySelector("[aria-invalid=true]");
    if (invalid) invalid.focus();
    var form = event.detail.elt.closest && event.detail.elt.closest("form");
    updateSelection(form && form.querySelector("input[name=ids]") ? form : null);
  });
})();
