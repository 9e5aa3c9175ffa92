// Highlights a task across the timeline, the graph and the table, fills the detail panel
// from the embedded run data, and shows times in the reader's time zone. The page is
// complete without this script.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("run-data").textContent);

  function el(tag, text) {
    var node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function localTimes() {
    var nodes = document.querySelectorAll("time[datetime]");
    for (var i = 0; i < nodes.length; i++) {
      var when = new Date(nodes[i].getAttribute("datetime"));
      if (!isNaN(when.getTime())) {
        nodes[i].title = nodes[i].textContent + " UTC";
        nodes[i].textContent = when.toLocaleString();
        nodes[i].setAttribute("data-local", "true");
      }
    }
  }

  function attemptLine(a) {
    var parts = ["#" + a.attempt + " " + a.outcome + " (" + a.context + " context)"];
    if (a.seconds !== null) parts.push(a.seconds + " s");
    if (a.reformats) parts.push(a.reformats + " reformat" + (a.reformats > 1 ? "s" : ""));
    if (a.tokens !== null) parts.push(a.tokens + " tokens");
    if (a.error) parts.push(a.error + ": " + (a.reason || ""));
    return parts.join(" · ");
  }

  function showDetail(taskId) {
    var task = data.tasks[taskId];
    var panel = document.getElementById("detail");
    if (!task || !panel) return;
    panel.textContent = "";
    panel.appendChild(el("h2", "Task " + taskId));
    panel.appendChild(el("p", "State: " + task.state +
      (task.depends_on.length ? " · depends on " + task.depends_on.join(", ") : "")));
    if (task.reason) panel.appendChild(el("p", task.reason));
    var list = el("ol");
    task.attempts.forEach(function (a) { list.appendChild(el("li", attemptLine(a))); });
    if (!task.attempts.length) list.appendChild(el("li", "never started"));
    panel.appendChild(list);
    panel.setAttribute("data-task", taskId);
  }

  function select(taskId) {
    var marked = document.querySelectorAll(".selected");
    for (var i = 0; i < marked.length; i++) marked[i].classList.remove("selected");
    var lit = document.querySelectorAll("path.edge.lit");
    for (var j = 0; j < lit.length; j++) lit[j].classList.remove("lit");
    var same = document.querySelectorAll("[data-task]");
    for (var k = 0; k < same.length; k++) {
      if (same[k].getAttribute("data-task") === taskId && same[k].id !== "detail") {
        same[k].classList.add("selected");
      }
    }
    var edges = document.querySelectorAll("path.edge");
    for (var m = 0; m < edges.length; m++) {
      if (edges[m].getAttribute("data-to") === taskId ||
          edges[m].getAttribute("data-from") === taskId) edges[m].classList.add("lit");
    }
    showDetail(taskId);
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target.closest("[data-task]") : null;
    if (target && target.id !== "detail") select(target.getAttribute("data-task"));
  });

  // Start on the task most worth a look: the first that failed, else the first that did
  // not succeed, else the first retried or reformatted, else the first.
  function initial() {
    var ids = data.order;
    function first(test) { return ids.filter(function (id) { return test(data.tasks[id]); })[0]; }
    return first(function (t) { return t.state === "failed"; }) ||
      first(function (t) { return t.state !== "succeeded"; }) ||
      first(function (t) {
        return t.attempts.length > 1 || t.attempts.some(function (a) { return a.reformats > 0; });
      }) || ids[0];
  }

  localTimes();
  var first = initial();
  if (first !== undefined) select(first);
  document.body.setAttribute("data-ready", "true");
})();
