// Console: the list of collections, to create, open or delete one.

import { api, confirmDialog, count, el, enc, explain } from "./console.js";

const $ = (selector) => document.querySelector(selector);
const table = $("#collections");
const message = $("#message");

async function load() {
  try {
    const [{ collections }, stats] = await Promise.all([
      api("GET", "/v1/collections"),
      api("GET", "/v1/stats?range=24h").catch(() => null),
    ]);
    const recognized = new Map((stats ? stats.collections : []).map((c) => [c.collection, c.recognitions]));
    table.tBodies[0].replaceChildren(...collections.map((c) => row(c, recognized.get(c.collection) || 0)));
    table.hidden = !collections.length;
    message.textContent = collections.length
      ? `${collections.length} collection${collections.length === 1 ? "" : "s"}`
      : "No collections yet: create one above.";
    document.body.dataset.collections = collections.length;
  } catch (err) {
    message.textContent = `The collections could not be listed: ${explain(err)}`;
  }
}

function row(c, recognitions) {
  const remove = el("button", { type: "button", class: "danger small", text: "Delete", "aria-label": `delete ${c.collection}` });
  remove.addEventListener("click", async () => {
    const items = c.items === 1 ? "its item" : `its ${c.items} items`;
    if (!(await confirmDialog(`Delete collection ${c.collection} and ${items}? This cannot be undone.`))) return;
    try {
      await api("DELETE", `/v1/collections/${enc(c.collection)}`);
      message.textContent = `Deleted ${c.collection}.`;
    } catch (err) {
      message.textContent = `Not deleted: ${explain(err)}`;
    }
    load();
  });
  return el(
    "tr",
    { dataset: { collection: c.collection } },
    el("td", {}, el("a", { href: `/console/collections/${enc(c.collection)}`, text: c.collection })),
    el("td", { class: "num", text: count(c.items) }),
    el("td", { class: "num", text: count(recognitions) }),
    el("td", { class: "num", text: String(c.version) }),
    el("td", { class: "row-actions" }, remove),
  );
}

$("#create").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("#new-name").value.trim();
  const note = $("#create-message");
  try {
    const reply = await api("PUT", `/v1/collections/${enc(name)}`);
    note.textContent = reply.created ? `Created ${name}.` : `${name} already exists.`;
    $("#new-name").value = "";
    window.location.href = `/console/collections/${enc(name)}`;
  } catch (err) {
    note.textContent = explain(err);
  }
});

load();
