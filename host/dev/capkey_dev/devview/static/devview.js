// Device view: shows the device's screen and sends key presses. Paths are relative to the page,
// so the view works mounted anywhere (the demo portal embeds it under its own prefix).
(function () {
  "use strict";
  const img = document.getElementById("screen");
  const lines = document.getElementById("lines");
  const status = document.getElementById("status");
  const KEYS = "0123456789ABCD*#";
  // the portal's « Version accessible » asks for larger, higher-contrast keys and text
  if (new URLSearchParams(location.search).get("version") === "accessible") {
    document.body.classList.add("accessible");
  }
  let version = null;
  let pending = Promise.resolve();

  async function refresh() {
    try {
      const r = await fetch("screen.json", { cache: "no-store" });
      if (!r.ok) throw new Error((await r.json()).error || r.statusText);
      const s = await r.json();
      if (s.version !== version) {
        version = s.version;
        img.src = "screen.png?v=" + encodeURIComponent(s.version);
        lines.textContent = s.lines.join("\n");
      }
      status.textContent = "";
    } catch (e) {
      status.textContent = "Appareil injoignable : " + e.message;
    }
  }

  function press(key) {
    // keys go out one at a time, in order, even when clicked quickly
    pending = pending.then(async () => {
      try {
        const r = await fetch("press", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ keys: key }),
        });
        if (!r.ok) throw new Error((await r.json()).error || r.statusText);
      } catch (e) {
        status.textContent = "Touche non transmise : " + e.message;
      }
      refresh();
    });
  }

  document.querySelectorAll(".keypad button").forEach((b) => {
    b.addEventListener("click", () => press(b.dataset.key));
  });
  document.addEventListener("keydown", (ev) => {
    let k = ev.key.length === 1 ? ev.key.toUpperCase() : null;
    if (ev.key === "Enter") k = "D";
    if (ev.key === "Escape") k = "*";
    if (ev.key === "Backspace") k = "C";
    if (k && KEYS.includes(k)) {
      ev.preventDefault();
      const b = document.querySelector('.keypad button[data-key="' + k + '"]');
      if (b) { b.classList.add("pressed"); setTimeout(() => b.classList.remove("pressed"), 120); }
      press(k);
    }
  });
  refresh();
  setInterval(refresh, 300);
})();
