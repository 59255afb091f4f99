// capkey demo portal: the certificate dialogue with the local signing agent ("TURBO SIGN"), the
// check that the agent runs, and the device view's frame height.
// The page never sees a PIN: the person confirms and types it on the device. The agent answers
// with the signature and the certificate, which the page posts to the bank, which verifies them.
(function () {
  "use strict";
  const MESSAGES = {
    no_device: "Branchez votre Certificat sur votre ordinateur (aucun appareil trouvé).",
    denied: "Signature refusée sur l'appareil.",
    timeout: "Délai dépassé sur l'appareil : recommencez.",
    pin_blocked: "Le code PIN du certificat est bloqué : contactez votre banque.",
    busy: "L'appareil est occupé par une autre demande : réessayez.",
    forbidden: "Ce site n'est pas autorisé par l'agent de signature.",
    bad_request: "Demande refusée par l'agent de signature.",
    device_error: "Erreur de l'appareil.",
  };

  function setup(root) {
    const agent = root.dataset.agent.replace(/\/$/, "");
    const payload = root.dataset.payload;
    const form = document.getElementById(root.dataset.form);
    const status = root.querySelector(".status");
    const list = root.querySelector(".cert-list");
    const certs = root.querySelector(".certs");
    const onDevice = root.querySelector(".on-device");
    const listButton = root.querySelector('[data-action="list"]');
    const signButton = root.querySelector('[data-action="sign"]');
    const cancelButton = root.querySelector('[data-action="cancel"]');

    function say(text, bad) {
      status.textContent = text;
      status.classList.toggle("bad", !!bad);
    }

    const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

    // "busy" is answered at once, before the device showed anything (another request in
    // flight, or the device short of memory for a moment): asking again is safe.
    async function agentCall(path, options, attempts) {
      attempts = attempts || 5;
      for (let i = 1; ; i++) {
        let r;
        try {
          r = await fetch(agent + path, Object.assign({ cache: "no-store" }, options || {}));
        } catch (e) {
          throw new Error("L'agent de signature (TURBO SIGN) ne répond pas sur " + agent +
                          " : lancez-le sur cet ordinateur.");
        }
        let body = {};
        try { body = await r.json(); } catch (e) { /* empty answer */ }
        if (r.ok) return body;
        if (body.error === "busy" && i < attempts) {
          await sleep(300 * i);
          continue;
        }
        throw new Error(MESSAGES[body.error] || ("Erreur de l'agent (" + r.status + ")."));
      }
    }

    listButton.addEventListener("click", async () => {
      listButton.disabled = true;
      say("Recherche des certificats…");
      try {
        const found = (await agentCall("/v1/certificates")).certificates || [];
        certs.textContent = "";
        if (!found.length) throw new Error("Aucun certificat sur l'appareil branché.");
        found.forEach((c, i) => {
          const label = document.createElement("label");
          const input = document.createElement("input");
          input.type = "radio";
          input.name = "cert-choice";
          input.value = c.fingerprint;
          input.checked = i === 0;
          const text = document.createElement("span");
          const attr = (name) => {
            const m = new RegExp("(?:^|,)" + name + "=((?:\\\\,|[^,])+)").exec(c.subject);
            return m ? m[1] : "";
          };
          const cn = attr("CN");
          text.textContent = (cn ? cn + " — " + attr("O") : c.subject) +
            " — valable jusqu'au " + c.not_after.slice(0, 10);
          label.append(input, text);
          certs.append(label);
        });
        list.hidden = false;
        say("");
      } catch (e) {
        say(e.message, true);
      } finally {
        listButton.disabled = false;
      }
    });

    signButton.addEventListener("click", async () => {
      signButton.disabled = true;
      onDevice.hidden = false;
      say("Confirmez sur l'appareil puis saisissez le code PIN du certificat…");
      try {
        const chosen = root.querySelector('input[name="cert-choice"]:checked');
        const answer = await agentCall("/v1/sign", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ payload: payload }),
        });
        if (!answer.signature || !answer.certificate) throw new Error("Réponse incomplète de l'agent.");
        form.elements.signature.value = answer.signature;
        form.elements.certificate.value = answer.certificate;
        form.elements.payload.value = payload;
        say(chosen ? "Signature obtenue, vérification par la banque…" : "Signature obtenue…");
        form.submit();
      } catch (e) {
        onDevice.hidden = true;
        signButton.disabled = false;
        say(e.message, true);
      }
    });

    cancelButton.addEventListener("click", () => {
      agentCall("/v1/cancel", { method: "POST" }).catch(() => {});
    });
  }

  document.querySelectorAll(".signer[data-agent]").forEach(setup);

  // « TURBO SIGN »: the certificate tab says so at once when the signing agent does not answer.
  document.querySelectorAll(".turbo-sign[data-agent]").forEach(async (box) => {
    try {
      const r = await fetch(box.dataset.agent.replace(/\/$/, "") + "/v1/status",
                            { cache: "no-store" });
      if (r.ok) return;
    } catch (e) { /* no agent on this computer */ }
    box.hidden = false;
  });

  // The device view's frame grows with its content (same origin): no scrollbar, no key hidden.
  document.querySelectorAll("iframe.device").forEach((frame) => {
    const fit = () => {
      const doc = frame.contentDocument;
      if (doc && doc.documentElement) {
        frame.style.height = doc.documentElement.scrollHeight + "px";
      }
    };
    frame.addEventListener("load", () => {
      fit();
      if (window.ResizeObserver && frame.contentDocument) {
        new ResizeObserver(fit).observe(frame.contentDocument.documentElement);
      }
    });
  });
})();
