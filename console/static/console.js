/* cloudseal console: confirmation of destructive actions, back buttons, and the live
   meeting page (polls a small JSON endpoint and redraws turnout and results; shares are
   decimal strings of any size, so they are handled as BigInt). No framework, no build. */
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) { return; }
    if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); return; }
    var field = form.querySelector('input[name="confirmed"]');
    if (field) { field.value = "yes"; }
  });

  document.querySelectorAll("[data-back]").forEach(function (button) {
    if (window.history.length > 1) {
      button.hidden = false;
      button.addEventListener("click", function () { window.history.back(); });
    }
  });

  var live = document.getElementById("live");
  if (!live) { return; }

  var text = JSON.parse(live.dataset.text);
  var locale = document.documentElement.lang === "en" ? "en-US" : "zh-TW";
  var interval = parseInt(live.dataset.interval, 10) || 3000;

  function big(value) {
    try { return BigInt(value || 0); } catch (e) { return 0n; }
  }
  function grouped(value) { return big(value).toLocaleString(locale); }
  function percent(part, whole) {
    var w = big(whole);
    if (w === 0n) { return "0.0%"; }
    return (Number(big(part) * 10000n / w) / 100).toFixed(1) + "%";
  }
  function share(part, whole) {
    var w = big(whole);
    return w === 0n ? 0 : Number(big(part) * 100000n / w) / 1000;
  }
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") { node.textContent = attrs[name]; } else { node.setAttribute(name, attrs[name]); }
    });
    (children || []).forEach(function (child) { if (child) { node.appendChild(child); } });
    return node;
  }
  function setText(id, value) {
    var node = document.getElementById(id);
    if (node && node.textContent !== value) { node.textContent = value; }
  }

  function renderTurnout(data) {
    var tally = data.tally, turnout = tally.turnout;
    setText("holders-voted", String(turnout.holders_voted.toLocaleString(locale)));
    setText("holders-pct", percent(turnout.holders_voted, data.register_holders));
    setText("shares-voted", grouped(turnout.shares_voted));
    setText("shares-outstanding", grouped(turnout.outstanding_shares));
    setText("shares-pct", percent(turnout.shares_voted, turnout.outstanding_shares));
    setText("present-shares", grouped(tally.present_shares));
    setText("present-pct", percent(tally.present_shares, tally.outstanding_shares));
    var meter = document.getElementById("shares-meter");
    if (meter) { meter.style.width = share(turnout.shares_voted, turnout.outstanding_shares) + "%"; }
    Object.keys(tally.attendance || {}).forEach(function (mode) {
      var holders = document.querySelector('[data-mode-holders="' + mode + '"]');
      var shares = document.querySelector('[data-mode-shares="' + mode + '"]');
      if (holders) { holders.textContent = tally.attendance[mode].holders.toLocaleString(locale); }
      if (shares) { shares.textContent = grouped(tally.attendance[mode].shares); }
    });
    renderHours(turnout.by_hour || []);
  }

  function hourLabel(hour, withDay) {
    // "2026-06-01T10:00+08:00" (Asia/Taipei) -> "10:00" or "06-01 10:00"
    return (withDay ? hour.slice(5, 10) + " " : "") + hour.slice(11, 16);
  }

  function renderHours(hours) {
    var box = document.getElementById("by-hour");
    if (!box) { return; }
    box.textContent = "";
    if (!hours.length) { box.appendChild(el("p", {"class": "empty", text: text.no_votes_yet})); return; }
    var ns = "http://www.w3.org/2000/svg", column = 56, height = 150, top = 22, bottom = 34;
    var shown = hours.slice(-24), max = 0n;
    shown.forEach(function (h) { if (big(h.shares) > max) { max = big(h.shares); } });
    var days = {};
    shown.forEach(function (h) { days[h.hour.slice(0, 10)] = true; });
    var withDay = Object.keys(days).length > 1;
    var width = Math.max(shown.length * column, 240);
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + width + " " + (height + top + bottom));
    svg.setAttribute("role", "img");
    var summary = shown.map(function (h) {
      return hourLabel(h.hour, withDay) + ": " + h.holders + " " + text.holders + ", " + grouped(h.shares) + " " + text.shares;
    }).join("; ");
    svg.setAttribute("aria-label", text.hour_chart + ". " + summary);
    shown.forEach(function (h, i) {
      var barHeight = max === 0n ? 0 : Math.max(2, share(h.shares, max) / 100 * height);
      var x = i * column + 8, y = top + height - barHeight;
      var rect = document.createElementNS(ns, "rect");
      rect.setAttribute("x", x); rect.setAttribute("y", y);
      rect.setAttribute("width", column - 16); rect.setAttribute("height", barHeight);
      rect.setAttribute("class", "hour-bar");
      var title = document.createElementNS(ns, "title");
      title.textContent = hourLabel(h.hour, true) + " — " + h.holders + " " + text.holders + ", " + grouped(h.shares) + " " + text.shares;
      rect.appendChild(title);
      svg.appendChild(rect);
      var count = document.createElementNS(ns, "text");
      count.setAttribute("x", x + (column - 16) / 2); count.setAttribute("y", y - 6);
      count.setAttribute("class", "hour-count"); count.textContent = h.holders;
      svg.appendChild(count);
      var label = document.createElementNS(ns, "text");
      label.setAttribute("x", x + (column - 16) / 2); label.setAttribute("y", top + height + 20);
      label.setAttribute("class", "hour-label"); label.textContent = hourLabel(h.hour, withDay);
      svg.appendChild(label);
    });
    box.appendChild(svg);
  }

  function segment(kind, value, whole) {
    var node = el("span", {"class": "seg seg-" + kind, title: text[kind] + " " + percent(value, whole)});
    node.style.width = share(value, whole) + "%";
    return node;
  }

  function legend(kind, value, whole) {
    return el("li", {}, [el("span", {"class": "swatch seg-" + kind, "aria-hidden": "true"}),
      el("span", {text: text[kind] + " " + grouped(value) + " (" + percent(value, whole) + ")"})]);
  }

  function resolutionCard(item, result, frozen) {
    var whole = result.denominator, kinds = ["for", "against", "abstain", "not_voted"];
    var values = {"for": result.for_votes, against: result.against_votes, abstain: result.abstain_votes,
      not_voted: result.not_voted};
    var bar = el("div", {"class": "stacked", role: "img", "aria-label": kinds.map(function (k) {
      return text[k] + " " + percent(values[k], whole);
    }).join(", ")}, kinds.map(function (k) { return segment(k, values[k], whole); }));
    var outcome = (result.adopted ? text.adopted : text.not_adopted) + " (" + (frozen ? text.final : text.running) + ")";
    return [bar, el("ul", {"class": "legend"}, kinds.map(function (k) { return legend(k, values[k], whole); })),
      el("p", {"class": "outcome " + (result.adopted ? "yes" : "no"), text: outcome}),
      el("p", {"class": "hint", text: text.denominator + " " + grouped(whole) + " · " + text.rule + " " + result.rule +
        " · " + (result.quorum_met ? text.quorum_met : text.quorum_not_met)})];
  }

  function electionCard(item, result, frozen) {
    var names = {}, max = 0n;
    (item.candidates || []).forEach(function (c) { names[c.key] = c.name; });
    result.candidates.forEach(function (c) { if (big(c.votes) > max) { max = big(c.votes); } });
    var rows = result.candidates.map(function (c) {
      var fill = el("span", {"class": "fill" + (c.elected ? " elected" : "")});
      fill.style.width = (max === 0n ? 0 : share(c.votes, max)) + "%";
      var tie = result.tie_for_last_seat.indexOf(c.candidate_id) >= 0;
      return el("li", {"class": "standing"}, [
        el("span", {"class": "name", text: (names[c.candidate_id] || c.candidate_id) + " (" + c.candidate_id + ")"}),
        el("span", {"class": "track", "aria-hidden": "true"}, [fill]),
        el("span", {"class": "votes", text: grouped(c.votes) + " " + text.votes}),
        el("span", {"class": "marks"}, [
          c.elected ? el("span", {"class": "badge badge-elected", text: text.elected}) : null,
          tie ? el("span", {"class": "badge badge-tie", text: text.tie}) : null])
      ]);
    });
    var notes = [text.seats + " " + result.seats, text.votes_cast + " " + grouped(result.votes_cast) + " / " +
      grouped(result.votes_available), frozen ? text.final : text.running,
      result.quorum_met ? text.quorum_met : text.quorum_not_met];
    if (result.void_ballots) { notes.push(text.void + " " + result.void_ballots); }
    if (result.seats_by_lot) { notes.push(text.by_lot + " " + result.seats_by_lot); }
    if (result.unfilled_seats) { notes.push(text.unfilled + " " + result.unfilled_seats); }
    return [el("ol", {"class": "standings"}, rows), el("p", {"class": "hint", text: notes.join(" · ")})];
  }

  function renderItems(data) {
    var box = document.getElementById("items");
    if (!box) { return; }
    var results = {}, frozen = data.status === "frozen";
    (data.tally.items || []).forEach(function (r) { results[r.item_id] = r; });
    box.textContent = "";
    data.agenda.forEach(function (item) {
      var result = results[item.key];
      if (!result) { return; }
      var heading = el("h3", {}, [el("span", {text: item.key + ". " + item.title + " "}),
        el("span", {"class": "kind", text: text.kind[item.kind] || item.kind})]);
      var body = item.kind === "election" ? electionCard(item, result, frozen) : resolutionCard(item, result, frozen);
      box.appendChild(el("article", {"class": "card item", id: "item-" + item.key}, [heading].concat(body)));
    });
  }

  function render(data) {
    renderTurnout(data);
    renderItems(data);
    var badge = document.querySelector("#meeting-status .badge");
    if (badge && text.status[data.status]) {
      badge.textContent = text.status[data.status];
      badge.className = "badge badge-" + data.status;
    }
    setText("live-state", text.updated + " " + data.as_of);
  }

  function poll() {
    fetch(live.dataset.url, {credentials: "same-origin", cache: "no-store", headers: {Accept: "application/json"}})
      .then(function (response) {
        if (response.status === 401) { throw new Error("signed_out"); }
        if (!response.ok) { throw new Error("poll_failed"); }
        return response.json();
      })
      .then(function (data) { render(data); window.setTimeout(poll, interval); })
      .catch(function (error) {
        if (error.message === "signed_out") {
          var state = document.getElementById("live-state");
          state.textContent = "";
          state.appendChild(el("a", {href: "/console/sign-in?next=" + encodeURIComponent(location.pathname),
            text: text.signed_out}));
          return;
        }
        setText("live-state", text.poll_failed);
        window.setTimeout(poll, interval * 2);
      });
  }

  render(JSON.parse(live.dataset.initial));
  window.setTimeout(poll, interval);
}());
