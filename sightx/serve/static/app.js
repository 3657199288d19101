"use strict";
// The SightX page: one request per photo (a few at a time), results shown as they arrive.
const GRADES = ["No DR", "Mild", "Moderate", "Severe", "Proliferative"];
const PARALLEL = 3;
let token = sessionStorage.getItem("sightx-token") || "";
const $ = (sel, root = document) => root.querySelector(sel);

function headers() { return token ? { Authorization: "Bearer " + token } : {}; }

async function loadModel() {
  const res = await fetch("/v1/model", { headers: headers() });
  if (res.status === 401) { $("#token-form").hidden = false; $("#model").textContent = "an access token is needed"; return; }
  if (!res.ok) { $("#model").textContent = "model unavailable: " + res.status; return; }
  const m = await res.json();
  const v = m.validation;
  const metrics = v && v.kappa != null ? `; validation QWK ${v.kappa.toFixed(3)}` +
    (v.referable_sensitivity != null ? `, referable sensitivity ${v.referable_sensitivity.toFixed(2)}, specificity ${v.referable_specificity.toFixed(2)}` : "") : "";
  $("#model").textContent = `${m.arch} ${m.head} at ${m.image_size} px, epoch ${m.epoch}${metrics}; model ${m.sha256.slice(0, 12)}, ${m.device}`;
}

function pct(p) { return (100 * p).toFixed(1) + "%"; }

function showResult(card, r, ms) {
  if (r.field_jpeg) $(".field", card).src = "data:image/jpeg;base64," + r.field_jpeg;
  if (r.cam_png) $(".cam", card).src = "data:image/png;base64," + r.cam_png;
  $(".grade", card).textContent = `Grade ${r.grade}: ${r.grade_name}`;
  const ref = $(".referable", card);
  ref.classList.add(r.referable ? "yes" : "no");
  ref.textContent = "Referable DR (moderate or worse): " + (r.referable ? "yes" : "no") +
    (r.referable_probability != null ? ` (P = ${pct(r.referable_probability)})` : "");
  const g = r.quality.gradability;
  if (g) {
    $(".gradability", card).textContent = `Gradability ${g.score.toFixed(2)} (0-1)` +
      (g.reason ? `: possibly ungradable, ${g.reason}` : ": gradable");
  }
  const bars = $(".bars", card);
  if (r.probabilities) {
    r.probabilities.forEach((p, g) => {
      const label = document.createElement("span");
      label.textContent = `${g} ${GRADES[g]}`;
      const bar = document.createElement("div");
      bar.className = "bar" + (g === r.grade ? " top" : "");
      bar.setAttribute("role", "img");
      bar.setAttribute("aria-label", `${GRADES[g]} ${pct(p)}`);
      const fill = document.createElement("span");
      fill.style.width = pct(p);
      bar.append(fill);
      const value = document.createElement("span");
      value.textContent = pct(p);
      bars.append(label, bar, value);
    });
  } else {
    const s = document.createElement("p");
    s.textContent = `score ${r.score.toFixed(2)}; grade cut points ${r.thresholds.map((t) => t.toFixed(2)).join(", ")}`;
    bars.replaceWith(s);
  }
  const list = $(".warnings", card);
  for (const w of r.warnings) {
    const li = document.createElement("li");
    li.textContent = w.message;
    li.dataset.code = w.code;
    list.append(li);
  }
  const t = r.timings_ms;
  $(".time", card).textContent = `${Math.round(ms)} ms in all (decode ${t.decode.toFixed(0)}, preprocess ${t.preprocess.toFixed(0)}, ` +
    `model ${t.model.toFixed(0)} ms for a batch of ${r.batch_size})`;
  $(".status", card).hidden = true;
  $(".result", card).hidden = false;
  card.dataset.state = "done";
}

let withCam = true; // heat maps, while the server's runtime can make them

async function gradeOne(file, card) {
  const body = new FormData();
  body.append("files", file, file.name);
  const start = performance.now();
  try {
    let res;
    for (let attempt = 0; ; attempt++) {
      res = await fetch(withCam ? "/v1/grade?cam=1" : "/v1/grade", { method: "POST", body, headers: headers() });
      if (withCam && res.status === 400) {
        // ONNX Runtime and OpenVINO serve no Grad-CAM: grade without it from now on
        const why = await res.clone().json().catch(() => ({}));
        if (String(why.detail || "").startsWith("Grad-CAM needs PyTorch")) { withCam = false; continue; }
      }
      if (res.status !== 503 || attempt >= 5) break;
      await new Promise((ok) => setTimeout(ok, 1000 * Number(res.headers.get("Retry-After") || 1)));
    }
    const data = await res.json().catch(() => ({ detail: res.statusText }));
    if (!res.ok) throw new Error(data.detail || res.statusText);
    showResult(card, data.results[0], performance.now() - start);
  } catch (e) {
    card.dataset.state = "error";
    $(".status", card).textContent = "not graded: " + e.message;
  }
}

async function gradeAll(files) {
  const queue = [...files].map((file) => {
    const card = $("#card").content.firstElementChild.cloneNode(true);
    $(".name", card).textContent = file.name;
    $(".original", card).src = URL.createObjectURL(file);
    $("#results").prepend(card);
    return [file, card];
  });
  const worker = async () => { while (queue.length) { const [f, c] = queue.shift(); await gradeOne(f, c); } };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
}

function setup() {
  const drop = $("#drop");
  const input = $("#files");
  input.addEventListener("change", () => { gradeAll(input.files); input.value = ""; });
  for (const ev of ["dragenter", "dragover"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const ev of ["dragleave", "drop"]) drop.addEventListener(ev, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); gradeAll(e.dataTransfer.files); });
  const toggle = $("#show-cam");
  const sync = () => document.body.classList.toggle("cam-on", toggle.checked);
  toggle.addEventListener("change", sync);
  sync();
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    token = $("#token").value.trim();
    sessionStorage.setItem("sightx-token", token);
    $("#token-form").hidden = true;
    loadModel();
  });
  loadModel();
}

setup();
