// runspace dashboard: confirmations and live updates (server-sent events). The server renders
// every fragment (autoescaped); this file only puts them in place. No data is ever run as code.
"use strict";

document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});

(() => {
  const url = document.body.dataset.events;
  if (!url) return;
  const source = new EventSource(url);
  const element = (html) => {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  };

  source.addEventListener("open", () => document.body.classList.add("live"));
  source.addEventListener("error", () => document.body.classList.remove("live"));

  source.addEventListener("row", (event) => {
    const data = JSON.parse(event.data);
    const row = element(data.html);
    const old = document.getElementById("job-" + data.id);
    if (old) {
      old.replaceWith(row);
    } else if (data.new) {
      document.querySelector("#jobs tbody").prepend(row);
      document.querySelector("p.empty")?.remove();
    }
  });

  source.addEventListener("log", (event) => {
    const log = document.getElementById("log");
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    log.append(document.createTextNode(JSON.parse(event.data)));
    if (atEnd) log.scrollTop = log.scrollHeight;
  });

  source.addEventListener("status", (event) => {
    document.getElementById("status").innerHTML = JSON.parse(event.data).html;
  });

  source.addEventListener("done", () => {
    source.close();
    document.body.classList.remove("live");
    document.querySelector(".following")?.remove();
  });

  source.addEventListener("problem", (event) => {
    const problem = document.getElementById("problem");
    problem.textContent = JSON.parse(event.data).detail;
    problem.hidden = false;
    source.close();
  });
})();
