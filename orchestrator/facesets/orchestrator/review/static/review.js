// facesets review: crop selection (click, shift-click, keyboard) and actions sent as JSON
// POSTs carrying the page's CSRF token. No framework, no build step.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const flash = document.getElementById("flash");
  let busy = false;

  function say(text, ok) {
    flash.textContent = text;
    flash.className = ok ? "ok" : "error";
  }

  async function post(action, body) {
    if (busy) { say("an action is still running", false); return; }
    busy = true;
    document.body.classList.add("busy");
    try {
      const response = await fetch("/api/" + action, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(body),
        credentials: "same-origin",
      });
      let answer;
      try { answer = await response.json(); } catch (e) { answer = { ok: false, message: response.statusText }; }
      if (answer.ok) {
        sessionStorage.setItem("facesets-flash", answer.message || "done");
        const into = answer.summary && answer.summary.into;
        if (action === "split" && into && body.open) { location.href = "/faceset/" + encodeURIComponent(into); }
        else if (action === "merge" && body.leave) { location.href = "/faceset/" + encodeURIComponent(body.into); }
        else { location.reload(); }
      } else {
        say(answer.message || "refused", false);
      }
    } catch (error) {
      say("the review app did not answer: " + error, false);
    } finally {
      busy = false;
      document.body.classList.remove("busy");
    }
  }

  const told = sessionStorage.getItem("facesets-flash");
  if (told) { say(told, true); sessionStorage.removeItem("facesets-flash"); }

  // --- selection ------------------------------------------------------------------------
  const crops = Array.from(document.querySelectorAll("#crops .crop"));
  let anchor = -1;
  const counter = document.getElementById("selected-count");

  function selected() {
    return crops.filter((c) => c.classList.contains("selected")).map((c) => c.dataset.crop);
  }
  function refresh() {
    if (counter) counter.textContent = selected().length + " selected";
  }
  function toggle(index, range) {
    if (range && anchor >= 0) {
      const [a, b] = anchor < index ? [anchor, index] : [index, anchor];
      for (let i = a; i <= b; i++) crops[i].classList.add("selected");
    } else {
      crops[index].classList.toggle("selected");
      anchor = index;
    }
    crops[index].setAttribute("aria-selected", crops[index].classList.contains("selected"));
    refresh();
  }
  crops.forEach((crop, index) => {
    crop.addEventListener("click", (event) => { toggle(index, event.shiftKey); crop.focus(); });
  });

  const faceset = (document.querySelector(".tools") || {}).dataset;
  document.addEventListener("keydown", (event) => {
    if (!crops.length || event.target.matches("input, select, textarea")) return;
    const at = crops.indexOf(document.activeElement);
    const across = Math.max(1, Math.round(document.getElementById("crops").clientWidth / (crops[0].offsetWidth + 8)));
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: across, ArrowUp: -across };
    if (event.key in moves) {
      const next = Math.min(crops.length - 1, Math.max(0, (at < 0 ? 0 : at + moves[event.key])));
      crops[next].focus();
      if (event.shiftKey) toggle(next, true);
      event.preventDefault();
    } else if (event.key === " " && at >= 0) {
      toggle(at, event.shiftKey);
      event.preventDefault();
    } else if (event.key === "a" || event.key === "A") {
      crops.forEach((c) => c.classList.add("selected"));
      refresh();
    } else if (event.key === "Escape") {
      crops.forEach((c) => c.classList.remove("selected"));
      refresh();
    } else if ((event.key === "r" || event.key === "R" || event.key === "Delete") && faceset) {
      act("reject", null);
    }
  });

  // --- actions --------------------------------------------------------------------------
  function act(action, button) {
    const data = button ? button.dataset : {};
    const name = faceset ? faceset.faceset : data.faceset;
    const chosen = selected();
    if (["reject", "split", "split-into"].includes(action) && !chosen.length) {
      say("select one or more crops first", false);
      return;
    }
    if (action === "reject") post("reject", { faceset: name, crops: chosen });
    else if (action === "split") post("split", { faceset: name, crops: chosen, into: "" });
    else if (action === "split-into") post("split", { faceset: name, crops: chosen, into: document.getElementById("split-into").value });
    else if (action === "merge") post("merge", { faceset: name, into: document.getElementById("merge-into").value, leave: true });
    else if (action === "merge-pair") post("merge", { faceset: data.faceset, into: data.into });
    else if (action === "name") post("name", { faceset: name, name: document.getElementById("person-name").value });
    else if (action === "different") post("different", { faceset: data.faceset, other: data.other });
    else if (action === "restore") post("restore", { run: data.run });
    else if (action === "undo") post("undo", {});
  }
  document.querySelectorAll("button[data-action]").forEach((button) => {
    button.addEventListener("click", () => act(button.dataset.action, button));
  });
})();
